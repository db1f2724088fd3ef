"""Real text available offline: the CPython standard library's .py files, split train / held-out.

A file is held out when the SHA-1 of its relative path falls in the top HELDOUT_PERCENT (stable
across machines); tests, site-packages and IDLE/lib2to3 test data are left out altogether.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_STDLIB = "/root/.pyenv/versions/3.11.7/lib/python3.11"
EXCLUDED_DIRS = {"test", "tests", "idle_test", "site-packages", "__pycache__", "lib2to3", "ensurepip"}
HELDOUT_PERCENT = 5
FILE_SEPARATOR = "\n\n"


@dataclass
class Corpus:
    """One split as a single uint8 byte array (files joined by FILE_SEPARATOR) and its file list."""

    data: np.ndarray
    files: list[str]

    def window(self, rng: np.random.Generator, length: int) -> list[int]:
        start = int(rng.integers(0, len(self.data) - length))
        return self.data[start : start + length].tolist()


def stdlib_files(stdlib_dir: str | Path = DEFAULT_STDLIB) -> list[str]:
    root = Path(stdlib_dir)
    found = []
    for folder, subdirs, names in os.walk(root):
        subdirs[:] = [d for d in subdirs if d not in EXCLUDED_DIRS]  # prune: test/ alone is huge
        found += [Path(folder, n).relative_to(root) for n in names if n.endswith(".py")]
    return [rel.as_posix() for rel in sorted(found)]


def is_heldout(rel_path: str) -> bool:
    digest = hashlib.sha1(rel_path.encode()).digest()
    return int.from_bytes(digest[:4], "big") % 100 < HELDOUT_PERCENT


def load_split(split: str, stdlib_dir: str | Path = DEFAULT_STDLIB) -> Corpus:
    """split: "train" or "heldout". Files that are not valid UTF-8 are skipped."""
    assert split in ("train", "heldout"), split
    chosen, texts = [], []
    for rel in stdlib_files(stdlib_dir):
        if is_heldout(rel) != (split == "heldout"):
            continue
        try:
            texts.append((Path(stdlib_dir) / rel).read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            continue
        chosen.append(rel)
    data = np.frombuffer(FILE_SEPARATOR.join(texts).encode("utf-8"), dtype=np.uint8).copy()
    return Corpus(data=data, files=chosen)
