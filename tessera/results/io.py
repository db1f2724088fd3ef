"""Saving a run's results beside Hydra's output and loading many runs into one DataFrame.

A run dir holds requests.parquet, kv_usage.parquet and summary.json; summary.json is written last,
so its presence marks a complete run (sweeps skip complete runs when re-run).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from tessera.results.schema import add_latency_columns, conform

RUN_FILES = ("requests.parquet", "kv_usage.parquet", "summary.json")


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def save_run(run_dir: str | Path, requests: pd.DataFrame, summary: dict, kv_usage: pd.DataFrame | None = None,
             metadata: dict | None = None) -> Path:
    """Write one run's tables and summary (with run metadata: config, seed, git sha) into run_dir."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    frame = conform(requests)
    _atomic_write(run_dir / "requests.parquet", lambda p: frame.to_parquet(p, index=False))
    usage = kv_usage if kv_usage is not None else pd.DataFrame(columns=["worker", "t_s", "used_blocks", "num_blocks"])
    _atomic_write(run_dir / "kv_usage.parquet", lambda p: usage.to_parquet(p, index=False))
    payload = strict_json({"summary": summary, "metadata": metadata or {}})
    _atomic_write(run_dir / "summary.json",
                  lambda p: p.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str, allow_nan=False)))
    return run_dir


def strict_json(obj):
    """obj as strict JSON takes it (parsers other than Python's reject NaN and Infinity): NaN as None (null), an
    infinity as the string "inf" or "-inf", numpy scalars as plain numbers."""
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    return obj


def is_complete_run(run_dir: str | Path) -> bool:
    run_dir = Path(run_dir)
    return all((run_dir / name).exists() for name in RUN_FILES)


def _run_dirs(paths: Iterable[str | Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        path = Path(path)
        if is_complete_run(path):
            found.append(path)
        elif path.is_dir():
            found.extend(sorted(p.parent for p in path.rglob("summary.json") if is_complete_run(p.parent)))
        else:
            raise FileNotFoundError(f"{path} is neither a run dir (with {', '.join(RUN_FILES)}) nor a folder of runs")
    return found


def _flatten(prefix: str, value, out: dict) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value


def load(paths: str | Path | Iterable[str | Path]) -> pd.DataFrame:
    """One DataFrame of every request of every run found under `paths`, with latency columns added.

    Run-level columns: `run` (the run dir), `overrides` (Hydra overrides, if recorded) and every
    config value flattened as `cfg.<key>` so sweeps can be grouped by what they varied.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    frames = []
    for run_dir in _run_dirs(paths):
        frame = add_latency_columns(pd.read_parquet(run_dir / "requests.parquet"))
        meta = json.loads((run_dir / "summary.json").read_text()).get("metadata", {})
        frame["run"] = str(run_dir)
        frame["overrides"] = ",".join(meta.get("overrides", []))
        flat: dict = {}
        _flatten("cfg", meta.get("config", {}), flat)
        for key, value in flat.items():
            frame[key] = value if not isinstance(value, list) else str(value)
        frames.append(frame)
    if not frames:
        raise FileNotFoundError(f"no complete runs (folders with {', '.join(RUN_FILES)}) under {list(paths)}")
    return pd.concat(frames, ignore_index=True)
