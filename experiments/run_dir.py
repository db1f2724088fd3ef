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

LOG_NAME = "run.log"
HYDRA_SUBDIR = ".hydra"
# Keys that change how a run is shown, not what it computes (Hydra's override_dirname excludes the same ones):
# a finished run is the one asked for when everything else matches.
PRESENTATION_KEYS = ("force", "sweep_name", "notes", "output.progress", "output.print_table", "output.figures")


@dataclass(frozen=True)
class RunDirBefore:
    """What a run folder held before this run wrote to it: existed, its entries' names, run.log's size (None:
    there was none)."""

    existed: bool
    entries: frozenset[str]
    log_bytes: int | None


def snapshot(run_dir: Path) -> RunDirBefore:
    """The folder as it is now (before Hydra or the run writes to it)."""
    if not run_dir.is_dir():
        return RunDirBefore(False, frozenset(), None)
    log = run_dir / LOG_NAME
    return RunDirBefore(True, frozenset(p.name for p in run_dir.iterdir()), log.stat().st_size if log.exists() else None)


def snapshot_after_hydra(run_dir: Path) -> RunDirBefore:
    """The best guess when no snapshot was taken before Hydra made the folder (a sweep's job, an interpolated
    hydra.run.dir): Hydra's .hydra/ and the log are taken as this run's (the log cut back to its size now); every
    other entry as the folder's own."""
    if not run_dir.is_dir():
        return RunDirBefore(False, frozenset(), None)
    entries = frozenset(p.name for p in run_dir.iterdir()) - {HYDRA_SUBDIR, LOG_NAME}
    log = run_dir / LOG_NAME
    size = log.stat().st_size if log.exists() else None
    return RunDirBefore(bool(entries), entries, size or None)


def named_run_dir(argv: list[str]) -> Path | None:
    """The folder `hydra.run.dir=...` names on the command line (the last one), or None when there is none or it
    has an interpolation (resolved by Hydra only)."""
    value = None
    for arg in argv:
        if arg.startswith("hydra.run.dir="):
            value = arg.split("=", 1)[1].strip("'\"")
    if not value or "${" in value:
        return None
    return Path(value).expanduser().absolute()


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
    old, new = _flat(stored), _flat(OmegaConf.to_container(cfg, resolve=True))
    return sorted(key for key in old.keys() | new.keys()
                  if key not in PRESENTATION_KEYS and old.get(key, "<unset>") != new.get(key, "<unset>"))


def finished_run(run_dir: Path, cfg: DictConfig) -> dict | None:
    """The summary of the finished run in run_dir when it is this config's (the run is skipped), None when there
    is none or force=true; a finished run of another config is refused (ConfigError): its results stay, and the
    folder's .hydra/ is put back to that run's config (Hydra rewrote it before the check)."""
    if cfg.get("force") or not is_complete_run(run_dir):
        return None
    try:
        payload = json.loads((run_dir / "summary.json").read_text())
        stored = payload["metadata"]["config"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ConfigError(f"{run_dir} holds results whose summary.json records no tessera config: pick another "
                          "hydra.run.dir, or force=true to run over them") from None
    differ = config_differences(stored, cfg)
    if differ:
        _restore_hydra_files(run_dir, payload["metadata"])
        shown = ", ".join(differ[:5]) + (f" and {len(differ) - 5} more" if len(differ) > 5 else "")
        raise ConfigError(f"{run_dir} holds a finished run of another config (it differs in {shown}): pick another "
                          "hydra.run.dir, or force=true to replace that run")
    return payload["summary"]


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
