"""What every request under one HeadPlan derives from it (head counts, the WINDOW and OFFLOAD heads in row order,
the OFFLOAD rows of each rerank interval), computed once per plan for RequestKV.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from tessera.kvcache.head_plan import HeadMode, HeadPlan


@dataclass(frozen=True, slots=True)
class PlanLayout:
    """What every request under one HeadPlan derives from it, computed once per plan (read-only arrays): the head
    counts, the WINDOW and OFFLOAD heads' (layer, head) in row order and the OFFLOAD rows of each rerank interval."""

    num_full: int
    num_topk: int
    win_layers: np.ndarray
    win_heads: np.ndarray
    off_layers: np.ndarray
    off_heads: np.ndarray
    rows_by_interval: dict[int, np.ndarray]
    all_rows: np.ndarray


@lru_cache(maxsize=64)
def plan_layout(plan: HeadPlan) -> PlanLayout:
    """The plan's PlanLayout (HeadPlan hashes by identity and is immutable)."""
    mode = plan.mode
    win_layers, win_heads = np.nonzero(mode == HeadMode.WINDOW)
    off_layers, off_heads = np.nonzero(mode == HeadMode.OFFLOAD)
    intervals = plan.rerank_interval[off_layers, off_heads].astype(np.int64)
    rows_by_interval = {int(r): np.flatnonzero(intervals == r) for r in np.unique(intervals)}
    arrays = [win_layers, win_heads, off_layers, off_heads, *rows_by_interval.values()]
    all_rows = np.arange(len(off_layers))
    for a in arrays + [all_rows]:
        a.setflags(write=False)
    return PlanLayout(plan.count(HeadMode.FULL), plan.count(HeadMode.RESIDENT_TOPK), win_layers, win_heads,
                      off_layers, off_heads, rows_by_interval, all_rows)
