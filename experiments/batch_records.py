"""Which per-iteration outputs a simulator run writes (output.batch_log, output.chrome_trace), and writing them;
auto turns them on for small runs only, since both grow with the run (a row / a slice per iteration per worker)."""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from tessera.experiments.config import ConfigError
from tessera.results.trace import write_chrome_trace

AUTO_MAX_REQUESTS = {"batch_log": 20_000, "chrome_trace": 2_000}
FILES = {"batch_log": "batches.parquet", "chrome_trace": "trace.json"}


def switch(cfg: DictConfig, key: str, num_requests: int) -> bool:
    """output.<key>: true, false, or auto (on up to AUTO_MAX_REQUESTS[key] requests)."""
    value = str(cfg.output.get(key, "auto")).lower()
    if value not in ("auto", "true", "false"):
        raise ConfigError(f"output.{key}={cfg.output.get(key)!r} is invalid: use auto (on for runs of <= "
                          f"{AUTO_MAX_REQUESTS[key]:,} requests), true or false")
    return num_requests <= AUTO_MAX_REQUESTS[key] if value == "auto" else value == "true"


def wanted(cfg: DictConfig, num_requests: int) -> dict[str, bool]:
    return {key: switch(cfg, key, num_requests) for key in AUTO_MAX_REQUESTS}


def write(run_dir: Path, result, want: dict[str, bool], worker_names: dict[int, str]) -> list[str]:
    """Write batches.parquet and/or trace.json from a BackendResult run with batch_log=True; returns the names."""
    written = []
    if want["batch_log"]:
        result.batches.to_parquet(run_dir / FILES["batch_log"], index=False)
        written.append(FILES["batch_log"])
    if want["chrome_trace"]:
        write_chrome_trace(run_dir / FILES["chrome_trace"], result.batches, result.transfers, worker_names)
        written.append(FILES["chrome_trace"])
    return written
