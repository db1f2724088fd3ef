"""Recorded per-head top-K traces: the file format the runtime writes, and a TopKSource that replays one.

Format (.npz, numpy.savez_compressed):
    topk        int32 [steps, layers, kv_heads, K]: row t = the top-K page ids chosen at decode step
                n = t + 1 (n = seq_len - prompt_len after the step's token is written), best first,
                -1 pad when fewer than K pages exist.
    prompt_len  int64 scalar: prompt tokens.
    page_tokens int64 scalar: tokens per page (16).
    num_pages   int64 [steps] (optional): pages at each step; default ceil((prompt_len + t + 1) / page_tokens).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(slots=True)
class TopKTrace:
    topk: np.ndarray
    prompt_len: int
    page_tokens: int = 16
    num_pages: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.topk.ndim != 4:
            raise ValueError(f"trace topk must be [steps, layers, kv_heads, K], got shape {self.topk.shape}")
        if self.num_pages is None:
            steps = np.arange(1, self.topk.shape[0] + 1)
            self.num_pages = -(-(self.prompt_len + steps) // self.page_tokens)
        self.num_pages = np.asarray(self.num_pages, dtype=np.int64)
        if self.num_pages.shape != (self.topk.shape[0],):
            raise ValueError(f"trace num_pages must have shape ({self.topk.shape[0]},), got {self.num_pages.shape}")

    @property
    def k(self) -> int:
        return self.topk.shape[-1]

    def save(self, path: Path) -> None:
        np.savez_compressed(path, topk=self.topk.astype(np.int32), prompt_len=np.int64(self.prompt_len),
                            page_tokens=np.int64(self.page_tokens), num_pages=self.num_pages)

    @classmethod
    def load(cls, path: Path) -> "TopKTrace":
        with np.load(path) as f:
            num_pages = f["num_pages"] if "num_pages" in f.files else None
            page_tokens = int(f["page_tokens"]) if "page_tokens" in f.files else 16
            return cls(topk=f["topk"].astype(np.int32), prompt_len=int(f["prompt_len"]),
                       page_tokens=page_tokens, num_pages=num_pages)


class TraceTopK:
    """TopKSource replaying a trace: the set of step n is trace row n - 1."""

    def __init__(self, trace: TopKTrace) -> None:
        self.trace = trace

    def select(self, decode_step, num_pages, layers, heads, prev, steps_since, k) -> np.ndarray:
        steps = self.trace.topk.shape[0]
        if not 1 <= decode_step <= steps:
            raise ValueError(f"trace holds decode steps 1..{steps}, asked for step {decode_step}; "
                             "record a longer trace or cap the request's output length")
        if self.trace.k < k:
            raise ValueError(f"trace holds top-{self.trace.k} sets, the policy needs top-{k}")
        return self.trace.topk[decode_step - 1, layers, heads]
