"""Where new top-K page sets come from: the TopKSource seam, and the Quest MinMax page score in numpy.

The runtime computes scores in kernels and passes top-K ids; the simulator uses a head model or a trace.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np


class TopKSource(Protocol):
    """Top-K page ids of some (layer, KV head) pairs of one request at one decode step.

    Args:
        decode_step: n >= 1 (n = seq_len - prompt_len).
        num_pages: pages of the request (the last, possibly partial, one is the current page).
        layers, heads: int arrays [m], the heads to rank.
        prev: int32 [m, k] the heads' previous sets (-1 pad), or None at the first ranking.
        steps_since: int [m] decode steps since each head was last ranked (0 with prev=None).
        k: pages to select.
    Returns:
        int array [m, >= k]: page ids in [0, num_pages), best first, -1 pad; extra columns are ignored.
    """

    def select(self, decode_step: int, num_pages: int, layers: np.ndarray, heads: np.ndarray,
               prev: np.ndarray | None, steps_since: np.ndarray, k: int) -> np.ndarray: ...


def minmax_page_scores(queries: np.ndarray, kmin: np.ndarray, kmax: np.ndarray) -> np.ndarray:
    """Quest's upper bound per page: max over the GQA group's query heads of sum_j max(q_j kmin_j, q_j kmax_j).

    Shapes: queries [..., group, d]; kmin, kmax [..., pages, d] -> scores [..., pages].
    """
    q = queries[..., :, None, :]  # [..., group, 1, d]
    bound = np.maximum(q * kmin[..., None, :, :], q * kmax[..., None, :, :]).sum(-1)  # [..., group, pages]
    return bound.max(-2)


def topk_from_scores(scores: np.ndarray, k: int, num_pages: int) -> np.ndarray:
    """Top-k page ids per row of scores [..., pages >= num_pages], the current page forced in, best first."""
    s = np.array(scores[..., :num_pages], dtype=np.float64, copy=True)
    s[..., num_pages - 1] = np.inf  # the current page is always selected (paper: +FLT_MAX sentinel)
    if num_pages <= k:
        order = np.argsort(-s, axis=-1, kind="stable")
        pad = np.full(s.shape[:-1] + (k - num_pages,), -1, dtype=np.int64)
        return np.concatenate([order, pad], axis=-1).astype(np.int32)
    part = np.argpartition(-s, k - 1, axis=-1)[..., :k]
    order = np.argsort(-np.take_along_axis(s, part, -1), axis=-1, kind="stable")
    return np.take_along_axis(part, order, -1).astype(np.int32)


class ScoresTopK:
    """A TopKSource over page scores the backend computed for the whole request: [layers, heads, pages]."""

    def __init__(self, scores: np.ndarray) -> None:
        self.scores = scores

    def select(self, decode_step, num_pages, layers, heads, prev, steps_since, k) -> np.ndarray:
        return topk_from_scores(self.scores[layers, heads], k, num_pages)
