"""The `tessera` command: compose the Hydra config, validate it, run the chosen experiment, save results.

`tessera -m ...` sweeps (joblib or submitit launchers); a run whose dir already holds this config's results is
skipped, another config's results are refused (experiments/run_dir.py).
"""
from __future__ import annotations

import contextlib
import functools
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

from tessera.experiments.config import ConfigError, register_configs
from tessera.experiments.overrides import check_run
from tessera.experiments.registry import experiment_describer, experiment_runner
from tessera.experiments.run_dir import (RunDirBefore, finished_run, named_run_dir, prepare, remove_failed_run,
                                        snapshot, snapshot_after_hydra)
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


# run dirs named on the command line -> what they held before Hydra wrote to them (main(), before hydra_main)
_BEFORE: dict[Path, RunDirBefore] = {}


def run_config(cfg: DictConfig, run_dir: Path, overrides: list[str]) -> dict:
    """Run one composed config into run_dir (skipping it if it holds this config's finished run, unless
    cfg.force; refusing another config's)."""
    runner = experiment_runner(cfg.experiment)
    check_run(cfg, overrides)
    ran = experiment_describer(cfg.experiment)(cfg)  # validates the whole run before any work
    summary = finished_run(run_dir, cfg)
    if summary is not None:
        print(f"skipping {run_dir}: this config's results exist (force=true re-runs it)")
        return summary
    metadata = {"config": OmegaConf.to_container(cfg, resolve=True), "seed": cfg.seed, "git_sha": git_sha(),
                "overrides": overrides, "started_unix": time.time(), "ran": ran}
    return runner(cfg, run_dir, metadata)


@hydra.main(version_base="1.3", config_path=str(REPO_ROOT / "conf"), config_name="config")
def hydra_main(cfg: DictConfig) -> dict:
    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    before = _BEFORE.get(Path(os.path.abspath(run_dir))) or snapshot_after_hydra(run_dir)
    if hc.mode == RunMode.MULTIRUN and "joblib" in str(hc.launcher.get("_target_", "")):
        with open_dict(cfg):  # parallel jobs' bars would garble one terminal; each job prints its table
            cfg.output.progress = False
    try:
        with tee_to(run_dir / "run.log"):
            return run_config(cfg, run_dir, list(hc.overrides.task))
    except (ConfigError, TraceError) as err:
        print(f"tessera: config error: {err}", file=sys.stderr)
        remove_failed_run(run_dir, before)
        sys.exit(2)


@contextlib.contextmanager
def tee_to(path: Path):
    """Everything the run prints also goes to run.log (Hydra's log only captures the logging module)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as log:
        out, err = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = _Tee(out, log), _Tee(err, log)
        try:
            yield
        finally:
            sys.stdout, sys.stderr = out, err


class _Tee:
    def __init__(self, stream, log):
        self._stream, self._log = stream, log

    def write(self, text):
        self._log.write(text)
        return self._stream.write(text)

    def flush(self):
        self._log.flush()
        self._stream.flush()

    def __getattr__(self, name):
        return getattr(self._stream, name)


NOT_RUNNING = ("-h", "--help", "--hydra-help", "--version", "-i", "--info", "-c", "--cfg", "-p", "--package",
               "-sc", "--shell-completion")  # Hydra flags that print and exit: nothing runs, no run dir is made


def runs_once(argv: list[str]) -> bool:
    """A single run (not a sweep, not a flag that only prints)."""
    return not any(a in ("-m", "--multirun") or a.split("=")[0] in NOT_RUNNING for a in argv)


def precheck_overrides(argv: list[str]) -> str | None:
    """Compose a single run's config up front so a type error in an override is one line and exit code 2.

    Returns the error line, or None when the config composes (or for multirun/help invocations,
    which Hydra handles itself).
    """
    return compose_single_run(argv)[0]


def compose_single_run(argv: list[str], always: bool = False) -> tuple[str | None, DictConfig | None]:
    """(the error line, None) when a single run's overrides do not compose, else (None, the composed config); the
    config is None for sweeps and printing flags, and for the shipped defaults unless `always` (composing twice
    costs ~0.2 s of start-up)."""
    if not runs_once(argv):
        return None, None
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    overrides = [a for a in argv if not a.startswith("-")]
    if not always and all(a.lstrip("+~").startswith("hydra.") for a in overrides):
        return None, None
    overrides = [a for a in overrides if not a.lstrip("+~").startswith("hydra.")]  # Hydra reports its own keys
    for arg in overrides:
        key, _, value = arg.lstrip("+~").partition("=")
        if value == "null" and "." not in key and (REPO_ROOT / "conf" / key).is_dir():
            return (f"{key}=null is not an option of {key}: leave {key} out for its default, or use one of "
                    f"{', '.join(_group_options(key))}"), None
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(REPO_ROOT / "conf"), job_name="precheck"):
            return None, compose(config_name="config", overrides=overrides)
    except ValueError as err:  # Hydra's defaults list raises plain ValueErrors for some malformed group overrides
        return f"{str(err).strip().splitlines()[0]}; fix the override (see conf/ for each group's options)", None
    except (HydraException, OmegaConfBaseException) as err:
        cause = err.__cause__ or err
        first = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        missing = re.search(r"Could not find '([\w/]+)/([^'/]+)'", first)
        if missing and (REPO_ROOT / "conf" / missing.group(1)).is_dir():
            group = missing.group(1)
            return (f"{group}={missing.group(2)} is not an option of {group}: use one of "
                    f"{', '.join(_group_options(group))}"), None
        key = getattr(cause, "full_key", None)
        absent = _absent_profile_field(key, first)
        if absent:
            return absent, None
        where = f"{key}: " if key else ""
        head = "" if cause is err else f"{str(err).splitlines()[0]}: "
        return (f"{head}{where}{first}; fix the override (see conf/ and "
                "experiments/config.py for allowed values)"), None


def _absent_profile_field(key: str | None, message: str) -> str | None:
    """The fix for an engine-profile field that the chosen profile's file leaves at its default (Hydra: "Key 'x' is
    not in struct"), or None for any other error."""
    from dataclasses import fields

    from tessera.cost.engine_profile import EngineProfile

    group, _, name = (key or "").partition(".")
    if group != "engine_profile" or "not in struct" not in message:
        return None
    known = {f.name: f.default for f in fields(EngineProfile)}
    if name not in known:
        return (f"engine_profile.{name} is not an engine-profile field: use one of {', '.join(known)} "
                "(docs/fidelity.md)")
    return (f"engine_profile.{name}: this profile's file leaves {name} at its default ({known[name]!r}); to set "
            f"it, add it with a + prefix: +engine_profile.{name}=<value>")


def _group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (REPO_ROOT / "conf" / group).glob("*.yaml"))


MAX_PRECHECKED_RUNS = 1000


def precheck_sweep(argv: list[str]) -> str | None:
    """Compose and validate every run of a `-m` sweep before any is launched, so one bad value cannot
    leave the valid runs incomplete; returns the error lines of the runs that would fail, or None."""
    from itertools import product

    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    overrides = [a for a in argv if not a.startswith("-") and not a.split("=")[0].lstrip("+~").startswith("hydra")]
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as err:
        return f"{str(err).splitlines()[0]}; fix the override"
    axes = [[f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()] if o.is_sweep_override()
            else [o.input_line] for o in parsed]
    combos = list(product(*axes))
    if len(combos) > MAX_PRECHECKED_RUNS:
        return None  # too many to compose up front; each run still validates itself
    failures = []
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO_ROOT / "conf"), job_name="precheck"):
        for combo in combos:
            try:
                cfg = compose(config_name="config", overrides=list(combo))
                check_run(cfg, list(combo))
                experiment_describer(cfg.experiment)(cfg)
                job_dir = sweep_job_dir(argv, cfg, combo)
                if job_dir is not None:  # a finished run of another config there: refused before any job runs
                    finished_run(job_dir, cfg, where="sweep_name (or hydra.sweep.dir)", restore=False)
            except (ConfigError, TraceError) as err:
                failures.append(f"  {' '.join(combo)}: {err}")
            except (HydraException, OmegaConfBaseException, ValueError) as err:  # Hydra: plain ValueErrors too
                failures.append(f"  {' '.join(combo)}: {str(err).splitlines()[0]}")
    if failures:
        return (f"{len(failures)} of {len(combos)} runs of the sweep are invalid; nothing was launched:\n"
                + "\n".join(failures[:10]) + ("\n  ..." if len(failures) > 10 else ""))
    return None


def sweep_job_dir(argv: list[str], cfg: DictConfig, combo: tuple[str, ...]) -> Path | None:
    """The folder a sweep's job writes to, as Hydra names it (hydra.sweep.dir / the job's override_dirname: its
    overrides sorted, the excluded keys dropped); None when the command line changes how Hydra names it."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    sweep_dir = _named_sweep_dir(tuple(argv))
    if sweep_dir is None:
        return None
    last = {o.key_or_group: o for o in OverridesParser.create().parse_overrides(list(combo))}  # a repeated key: the last
    lines = sorted(o.input_line for key, o in last.items() if key not in _dirname_excluded_keys())
    return Path(os.path.abspath(sweep_dir or f"multirun/{cfg.sweep_name}")) / ",".join(lines)


@functools.cache
def _named_sweep_dir(argv: tuple[str, ...]) -> str | None:
    """hydra.sweep.dir as the command line sets it, "" for conf/'s multirun/<sweep_name>, None when the command line
    changes the naming otherwise (another hydra.sweep / hydra.job key, an interpolation)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    sweep_dir = ""
    for arg in (a for a in argv if a.lstrip("+").startswith(("hydra.sweep.", "hydra.job."))):
        if not arg.lstrip("+").startswith("hydra.sweep.dir="):
            return None
        sweep_dir = OverridesParser.create().parse_overrides([arg])[0].value()
        if not isinstance(sweep_dir, str) or not sweep_dir or "${" in sweep_dir:
            return None
    return sweep_dir


@functools.cache
def _dirname_excluded_keys() -> frozenset[str]:
    """conf/config.yaml's hydra.job.config.override_dirname.exclude_keys."""
    return frozenset(OmegaConf.load(REPO_ROOT / "conf" / "config.yaml").hydra.job.config.override_dirname.exclude_keys)


def main() -> None:
    argv = sys.argv[1:]
    if any(a in ("-m", "--multirun") for a in argv):
        error = precheck_sweep(argv)
        if error:
            print(f"tessera: config error: {error}", file=sys.stderr)
            sys.exit(2)
    run_dir = named_run_dir(argv) if runs_once(argv) else None
    error, cfg = compose_single_run(argv, always=run_dir is not None and is_complete_run(run_dir))
    if error is None and run_dir is not None:
        _BEFORE[run_dir] = snapshot(run_dir)
        error = prepare(run_dir)
        if error is None and cfg is not None:
            try:  # before Hydra writes its .hydra/ there
                if finished_run(run_dir, cfg, restore=False) is not None:
                    print(f"skipping {run_dir}: this config's results exist (force=true re-runs it)")
                    return
            except ConfigError as err:
                error = str(err)
    if error:
        print(f"tessera: config error: {error}", file=sys.stderr)
        sys.exit(2)
    skip_mode_compose(argv)
    hydra_main()


def skip_mode_compose(argv: list[str]) -> None:
    """Hydra composes the whole config once just to read hydra.mode (Hydra.get_mode) before composing it again to
    run; conf/ never sets hydra.mode, so unless the command line does, the answer is None (Hydra then picks RUN, or
    MULTIRUN for -m): skip that compose (~0.15 s of every run's start-up)."""
    if any(a.lstrip("+~").startswith("hydra.mode") for a in argv):
        return
    from hydra._internal.hydra import Hydra

    Hydra.get_mode = lambda self, config_name, overrides: None


if __name__ == "__main__":
    main()
