"""Write HF safetensors from a stream of tensors, in shards no larger than a size limit.

Shards are planned up front from the tensor sizes, so only one shard's tensors are ever in memory.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
         "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


@dataclass
class Shard:
    file_name: str
    names: list[str]
    nbytes: int


def parse_size(text: str | int) -> int:
    """'2GB' -> 2_000_000_000 (decimal units as transformers reads them; KiB/MiB/GiB are binary)."""
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", str(text))
    if not m or m.group(2).upper() not in UNITS:
        raise ValueError(f"size {text!r} is not understood; write e.g. 2GB, 500MB or 1GiB")
    return int(float(m.group(1)) * UNITS[m.group(2).upper()])


def plan_shards(sizes: dict[str, int], max_shard_bytes: int) -> list[Shard]:
    """Greedy shards in the given order; a tensor larger than the limit gets a shard of its own."""
    groups: list[list[str]] = [[]]
    used = 0
    for name, nbytes in sizes.items():
        if groups[-1] and used + nbytes > max_shard_bytes:
            groups.append([])
            used = 0
        groups[-1].append(name)
        used += nbytes
    if len(groups) == 1:
        return [Shard(SINGLE_FILE, groups[0], sum(sizes.values()))]
    n = len(groups)
    return [Shard(f"model-{i + 1:05d}-of-{n:05d}.safetensors", g, sum(sizes[x] for x in g))
            for i, g in enumerate(groups)]


def write_shard(folder: Path, shard: Shard, tensors: dict[str, torch.Tensor]) -> None:
    path = folder / shard.file_name
    save_file(tensors, str(path), metadata={"format": "pt"})
    path.chmod(0o666 & ~_umask())  # safetensors creates the file owner-only; make it readable like the rest


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_index(folder: Path, shards: list[Shard]) -> None:
    """model.safetensors.index.json, as transformers writes it; nothing for a single file."""
    if len(shards) == 1:
        return
    index = {
        "metadata": {"total_size": sum(s.nbytes for s in shards)},
        "weight_map": {name: s.file_name for s in shards for name in s.names},
    }
    (folder / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")
