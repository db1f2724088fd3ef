"""On-disk cache of the moments mode's tables (tessera/kvcache/rank_moments.py), as Vidur caches its trained
runtime predictors: a grid point's moments are drawn once per machine, then read back (~1 ms instead of ~9 ms each).

An entry's name hashes everything that fixes its draws: the table's settings and grid point, the source of the
modules whose code draws them (rank_moments.py, sampled_rerank.py, head_model.py) and numpy's version, so an edit to
that code or another numpy misses the old entries instead of reading them. Entries are written atomically (parallel
sweep jobs may share the folder); one that does not read back (truncated, foreign) is drawn again and rewritten.
TESSERA_CACHE_DIR sets the folder (default $XDG_CACHE_HOME/tessera or ~/.cache/tessera); TESSERA_CACHE_DIR=off draws
every table in memory only.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np

DRAW_MODULES = ("rank_moments.py", "sampled_rerank.py", "head_model.py")  # their code decides the drawn values


def cache_dir() -> Path | None:
    """The folder of the moment tables' entries, or None when caching is off."""
    configured = os.environ.get("TESSERA_CACHE_DIR")
    if configured is not None:
        if configured.strip().lower() in ("", "off", "0", "false", "none"):
            return None
        return Path(configured) / "rank_moments"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "tessera" / "rank_moments"


@lru_cache(maxsize=1)
def code_digest() -> str:
    """A digest of what draws the tables: their modules' source and numpy's version (its Generator streams may
    change between versions); a change to either changes every entry's name."""
    here = Path(__file__).resolve().parent
    h = hashlib.sha256(f"numpy {np.__version__}".encode())
    for name in DRAW_MODULES:
        h.update((here / name).read_bytes())
    return h.hexdigest()[:16]


def cached_arrays(key: str, names: tuple[str, ...], draw: Callable[[], dict]) -> dict:
    """draw()'s arrays (a dict holding at least `names`, arrays of one shape), read from the cache when an entry for
    `key` is there, else drawn and stored (one .npy of the arrays stacked in `names` order: ~0.1 ms to read). `key`
    must determine the draw (settings and seeds)."""
    folder = cache_dir()
    if folder is None:
        return draw()
    digest = hashlib.sha256(f"{code_digest()}|{'|'.join(names)}|{key}".encode()).hexdigest()[:32]
    path = folder / f"{digest}.npy"
    try:
        stacked = np.load(path, allow_pickle=False)
        if stacked.shape[0] == len(names):
            return dict(zip(names, stacked))
    except (OSError, ValueError, EOFError, IndexError):
        pass  # absent or unreadable: draw it (again)
    arrays = draw()
    _store(path, np.stack([arrays[name] for name in names]))
    return arrays


def _store(path: Path, stacked: np.ndarray) -> None:
    """Write atomically; a cache that cannot be written (read-only home, full disk) only costs the next draw."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".tmp-", suffix=".npy", delete=False) as tmp:
            np.save(tmp, stacked)
        os.replace(tmp.name, path)
    except OSError:
        if tmp is not None:
            try:
                os.unlink(tmp.name)
            except OSError:
                pass
