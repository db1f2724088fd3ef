"""What a policy decides once per model: how each (layer, KV head) keeps and reads its pages.

Every policy is a HeadPlan; RequestKV runs any HeadPlan, so the six policies share one state machine.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from enum import IntEnum

import numpy as np

from tessera.kvcache.geometry import PageGeometry


class HeadMode(IntEnum):
    FULL = 0  # all pages on device, all attended (vLLM; DuoAttention retrieval heads)
    RESIDENT_TOPK = 1  # all pages on device, top-K attended, rescored every step (Quest; unstable heads)
    WINDOW = 2  # sink pages + recent window on device and attended, older pages dropped (StreamingLLM)
    OFFLOAD = 3  # top-K + tail on device, every full page on host, reranked every interval (stable heads)


@dataclass(frozen=True, slots=True, eq=False)
class HeadPlan:
    """mode[l, h] and rerank_interval[l, h] (steps; 0 unless OFFLOAD), shared by all requests of a policy."""

    policy: str
    geometry: PageGeometry
    mode: np.ndarray  # int8 [layers, kv_heads]
    rerank_interval: np.ndarray  # int32 [layers, kv_heads]
    topk_pages: int = 0  # K for RESIDENT_TOPK and OFFLOAD heads
    sink_pages: int = 0  # WINDOW heads
    window_pages: int = 0  # WINDOW heads, the current page included
    keeps_minmax: bool = False  # MinMax metadata of every page of every head on device
    note: str = ""  # where the head classes came from

    def __post_init__(self) -> None:
        shape = (self.geometry.num_layers, self.geometry.num_kv_heads)
        if self.mode.shape != shape or self.rerank_interval.shape != shape:
            raise ValueError(f"head plan of {self.policy}: mode and rerank_interval must have shape {shape}, "
                             f"got {self.mode.shape} and {self.rerank_interval.shape}")
        offload = self.mode == HeadMode.OFFLOAD
        if np.any(self.rerank_interval[offload] < 1):
            raise ValueError(f"head plan of {self.policy}: OFFLOAD heads need a rerank interval >= 1")
        if self.window_pages < (1 if np.any(self.mode == HeadMode.WINDOW) else 0):
            raise ValueError(f"head plan of {self.policy}: WINDOW heads need window_pages >= 1")
        if self.topk_pages < (2 if np.any(self.mode % 2 == 1) else 0):
            raise ValueError(f"head plan of {self.policy}: top-K heads need topk_pages >= 2")
        self.mode.setflags(write=False)
        self.rerank_interval.setflags(write=False)

    def count(self, mode: HeadMode) -> int:
        return _mode_counts(self).get(int(mode), 0)

    def heads(self, mode: HeadMode) -> list[tuple[int, int]]:
        return [(int(l), int(h)) for l, h in zip(*np.nonzero(self.mode == mode))]


@lru_cache(maxsize=256)
def _mode_counts(plan: HeadPlan) -> dict[int, int]:
    """Heads per mode of a plan (its arrays are read-only and it hashes by identity: counted once)."""
    values, counts = np.unique(plan.mode, return_counts=True)
    return {int(v): int(c) for v, c in zip(values, counts)}
