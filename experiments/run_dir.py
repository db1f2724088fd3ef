"""A run folder's ownership: whether a finished run in it is the one asked for (skipped) or another config's
(refused), and what a run that fails removes: only what it wrote, never a folder's earlier files.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from tessera.experiments.config import ConfigError
from tessera.results import is_complete_run
from tessera.results.io import strict_json

LOG_NAME = "run.log"
HYDRA_SUBDIR = ".hydra"
HYDRA_FILES = {"config.yaml", "hydra.yaml", "overrides.yaml"}
# Keys that change how a run is shown, not what it computes (Hydra's override_dirname excludes the same ones):
# a finished run is the one asked for when everything else matches.
PRESENTATION_KEYS = ("force", "sweep_name", "notes", "output.progress", "output.print_table", "output.figures")


@dataclass(frozen=True)
class RunDirBefore:
    """What a run folder held before this run wrote to it: existed, its entries' names, run.log's size (None:
    there was none), and the outermost of its missing parent folders (made for the run, removed with it)."""

    existed: bool
    entries: frozenset[str]
    log_bytes: int | None
    first_missing: Path | None = None


def snapshot(run_dir: Path) -> RunDirBefore:
    """The folder as it is now (before Hydra or the run writes to it)."""
    if not run_dir.is_dir():
        missing = run_dir
        while not missing.parent.exists() and missing.parent != missing:
            missing = missing.parent
        return RunDirBefore(False, frozenset(), None, missing)
    log = run_dir / LOG_NAME
    return RunDirBefore(True, frozenset(p.name for p in run_dir.iterdir()), log.stat().st_size if log.exists() else None)


def snapshot_after_hydra(run_dir: Path) -> RunDirBefore:
    """The best guess when no snapshot was taken before Hydra made the folder (a sweep's job, an interpolated
    hydra.run.dir): an empty .hydra/ (Hydra's three files only) and an empty run.log are taken as this run's;
    anything else, a log with lines or other files in .hydra/ included, as the folder's own."""
    if not run_dir.is_dir():
        return RunDirBefore(False, frozenset(), None)
    names = {p.name for p in run_dir.iterdir()}
    hydra = run_dir / HYDRA_SUBDIR
    if hydra.is_dir() and {p.name for p in hydra.iterdir()} <= HYDRA_FILES:
        names.discard(HYDRA_SUBDIR)
    log = run_dir / LOG_NAME
    size = log.stat().st_size if log.exists() else 0
    if not size:
        names.discard(LOG_NAME)
    return RunDirBefore(bool(names), frozenset(names), size or None)


def named_run_dir(argv: list[str]) -> Path | None:
    """The folder `hydra.run.dir=...` (or +/++hydra.run.dir) names on the command line, parsed as Hydra parses it
    (quotes, escapes) and made absolute as Hydra does (os.path.abspath: `..` folded, `~` kept); None when there is
    none, it does not parse or it has an interpolation (resolved by Hydra only)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    args = [a for a in argv if a.lstrip("+").startswith("hydra.run.dir=")]
    if not args:
        return None
    try:
        value = OverridesParser.create().parse_overrides(args[-1:])[0].value()
    except HydraException:
        return None
    if not isinstance(value, str) or not value or "${" in value:
        return None
    return Path(os.path.abspath(value))


def prepare(run_dir: Path) -> str | None:
    """Make the folder a run will write to, before Hydra does; the error line when it cannot be one."""
    if run_dir.exists() and not run_dir.is_dir():
        return f"hydra.run.dir={run_dir} is a file, not a folder: name a folder for the run's results"
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        return f"hydra.run.dir={run_dir} cannot be made ({err.strerror or err}): name a folder you can write to"
    if not os.access(run_dir, os.W_OK):
        return f"hydra.run.dir={run_dir} is not writable: name a folder you can write to"
    return None


def _flat(tree, prefix: str = "") -> dict[str, object]:
    if isinstance(tree, dict):
        out: dict[str, object] = {}
        for key, value in tree.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out or {prefix.rstrip("."): {}}
    return {prefix.rstrip("."): tree}


def config_differences(stored: dict, cfg: DictConfig) -> list[str]:
    """The dotted keys whose values differ between a finished run's config (summary.json metadata.config) and
    this one, presentation keys aside."""
    old, new = _flat(stored), _flat(strict_json(OmegaConf.to_container(cfg, resolve=True)))  # as summary.json has it
    return sorted(key for key in old.keys() | new.keys()
                  if key not in PRESENTATION_KEYS and old.get(key, "<unset>") != new.get(key, "<unset>"))


def finished_run(run_dir: Path, cfg: DictConfig, where: str = "hydra.run.dir", restore: bool = True) -> dict | None:
    """The summary of the finished run in run_dir when it is this config's (the run is skipped), None when there
    is none or force=true; a finished run of another config is refused (ConfigError naming `where`, the setting that
    picks another folder): its results stay, and with `restore` (Hydra rewrote them already) the folder's
    .hydra/config.yaml and overrides.yaml are put back to that run's (hydra.yaml is not: the command line
    checks a named run dir before Hydra writes, experiments/run.py)."""
    if cfg.get("force") or not is_complete_run(run_dir):
        return None
    try:
        payload = json.loads((run_dir / "summary.json").read_text())
        stored = payload["metadata"]["config"]
        summary = payload["summary"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ConfigError(f"{run_dir} holds results whose summary.json records no tessera config: pick another "
                          f"{where}, or force=true to run over them") from None
    differ = config_differences(stored, cfg)
    if differ:
        if restore:
            _restore_hydra_files(run_dir, payload["metadata"])
        shown = ", ".join(differ[:5]) + (f" and {len(differ) - 5} more" if len(differ) > 5 else "")
        raise ConfigError(f"{run_dir} holds a finished run of another config (it differs in {shown}): pick another "
                          f"{where}, or force=true to replace that run")
    return summary


def _restore_hydra_files(run_dir: Path, metadata: dict) -> None:
    folder = run_dir / HYDRA_SUBDIR
    if not folder.is_dir():
        return
    (folder / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(metadata["config"])))
    (folder / "overrides.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(list(metadata.get("overrides", [])))))


def remove_failed_run(run_dir: Path, before: RunDirBefore, keep_log: bool = False) -> None:
    """A run that failed leaves no folder that looks like a run, and takes nothing that was there before it: a new
    folder goes whole; in an existing one only the entries the run added go and run.log is cut back to its earlier
    size. keep_log (a crash): everything stays, for the post-mortem. A finished run's folder is never touched."""
    if keep_log or is_complete_run(run_dir) or not run_dir.is_dir():
        return
    if not before.existed:
        shutil.rmtree(run_dir, ignore_errors=True)
        folder = run_dir.parent
        while (before.first_missing is not None and folder.is_relative_to(before.first_missing) and folder.is_dir()
               and not any(folder.iterdir())):  # the parent folders made for it, while empty
            folder.rmdir()
            folder = folder.parent
        return
    for entry in run_dir.iterdir():
        if entry.name == LOG_NAME and before.log_bytes is not None:
            with entry.open("r+b") as log:
                log.truncate(before.log_bytes)
        elif entry.name not in before.entries:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
