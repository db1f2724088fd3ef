"""The `tessera` command: compose the Hydra config, validate it, run the chosen experiment, save results.

`tessera -m ...` sweeps (joblib or submitit launchers); a run whose dir already holds results is skipped.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from tessera.experiments.config import ConfigError, register_configs
from tessera.experiments.registry import experiment_runner
from tessera.paths import REPO_ROOT
from tessera.results import is_complete_run
from tessera.workload import TraceError

register_configs()


def git_sha() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                              timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def run_config(cfg: DictConfig, run_dir: Path, overrides: list[str]) -> dict:
    """Run one composed config into run_dir (skipping it if complete, unless cfg.force)."""
    runner = experiment_runner(cfg.experiment)
    if is_complete_run(run_dir) and not cfg.force:
        print(f"skipping {run_dir}: results exist (force=true re-runs it)")
        return json.loads((run_dir / "summary.json").read_text())["summary"]
    metadata = {"config": OmegaConf.to_container(cfg, resolve=True), "seed": cfg.seed, "git_sha": git_sha(),
                "overrides": overrides, "started_unix": time.time()}
    return runner(cfg, run_dir, metadata)


@hydra.main(version_base="1.3", config_path=str(REPO_ROOT / "conf"), config_name="config")
def hydra_main(cfg: DictConfig) -> dict:
    hc = HydraConfig.get()
    try:
        return run_config(cfg, Path(hc.runtime.output_dir), list(hc.overrides.task))
    except (ConfigError, TraceError) as err:
        print(f"tessera: config error: {err}", file=sys.stderr)
        sys.exit(2)


def precheck_overrides(argv: list[str]) -> str | None:
    """Compose a single run's config up front so a type error in an override is one line and exit code 2.

    Returns the error line, or None when the config composes (or for multirun/help invocations,
    which Hydra handles itself).
    """
    if any(a in ("-m", "--multirun", "-h", "--help", "--hydra-help", "--info") or a.startswith("--cfg")
           for a in argv):
        return None
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    overrides = [a for a in argv if not a.startswith("-")]
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(REPO_ROOT / "conf"), job_name="precheck"):
            compose(config_name="config", overrides=overrides)
    except (HydraException, OmegaConfBaseException) as err:
        cause = err.__cause__ or err
        first = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        key = getattr(cause, "full_key", None)
        where = f"{key}: " if key else ""
        head = "" if cause is err else f"{str(err).splitlines()[0]}: "
        return (f"{head}{where}{first}; fix the override (see conf/ and "
                "experiments/config.py for allowed values)")
    return None


def main() -> None:
    error = precheck_overrides(sys.argv[1:])
    if error:
        print(f"tessera: config error: {error}", file=sys.stderr)
        sys.exit(2)
    hydra_main()


if __name__ == "__main__":
    main()
