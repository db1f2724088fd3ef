"""Where Tessera finds its shipped data and model files.

The repo ships the public traces and profiles it uses under data/ (each folder with its SOURCE.md
and LICENSE); TESSERA_DATA_DIR overrides the location.
"""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """The folder holding the shipped traces and profiles (data/ in the repo unless overridden)."""
    return Path(os.environ.get("TESSERA_DATA_DIR", REPO_ROOT / "data"))


def data_path(*parts: str) -> Path:
    """A file or folder under the data dir; a clear error if it is missing."""
    path = data_dir().joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(
            f"data file {path} not found; Tessera expects its shipped data under {data_dir()} "
            f"(set TESSERA_DATA_DIR to point elsewhere)")
    return path


def repo_path(path: str | Path) -> Path:
    """A config's path: absolute as given, else relative to the repository root (not the working directory)."""
    path = Path(path)
    return path if path.is_absolute() else REPO_ROOT / path
