"""Host syncs of CUDA work, counted with ``torch.cuda.set_sync_debug_mode("warn")``: torch warns at every
call that makes the host wait for the GPU (.item(), .tolist(), .cpu(), pageable copies, nonzero, ...).
Each warning carries the Python line that caused it, so the report can say where the syncs come from.
"""
from __future__ import annotations

import contextlib
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch


@dataclass
class SyncCount:
    count: int = 0
    where: Counter = field(default_factory=Counter)  # "file:line" -> syncs

    def top(self, n: int = 5) -> str:
        return ", ".join(f"{w} x{c}" for w, c in self.where.most_common(n))


@contextlib.contextmanager
def count_cuda_syncs() -> Iterator[SyncCount]:
    result = SyncCount()
    previous = torch.cuda.get_sync_debug_mode()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield result
        finally:
            torch.cuda.set_sync_debug_mode(previous)
    for w in caught:
        if "synchroniz" in str(w.message):
            result.count += 1
            result.where[f"{w.filename.rsplit('/', 2)[-1]}:{w.lineno}"] += 1
