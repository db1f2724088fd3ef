"""What a RequestKV call hands back to its backend: page moves (ids) and a per-step summary (counts, bytes).

Page lists are int32 arrays [n, 3] of (layer, kv_head, page); the simulator can switch them off and
read only the counters.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

_EMPTY = np.zeros((0, 3), dtype=np.int32)


def empty_pages() -> np.ndarray:
    return _EMPTY


@dataclass(slots=True)
class PageMoves:
    """Page ids that move at one event.

    d2h: full pages of OFFLOAD heads to copy device -> host now (each page exactly once in its life).
    h2d: host pages promoted into the top-K, to copy host -> device (into blocks of `free` pages).
    free: pages leaving the device; their blocks are released once the copies pending for this request
        (this step's h2d, earlier d2h of the same pages) have landed. Their content is on host.
    drop: pages discarded for good (WINDOW heads), released at once.
    """

    d2h: np.ndarray = field(default_factory=empty_pages)
    h2d: np.ndarray = field(default_factory=empty_pages)
    free: np.ndarray = field(default_factory=empty_pages)
    drop: np.ndarray = field(default_factory=empty_pages)


@dataclass(slots=True)
class StepSummary:
    """One request after one event (prefill done, decode step, reload landed, finish).

    device_pages / host_pages: pages (of one layer-head each) held after the event.
    attended_tokens_per_head: KV tokens this decode step read, averaged over (layer, KV head) pairs;
        the simulator's BatchShape.decode_kv_tokens.
    sparse_tokens_per_head: the part of attended_tokens_per_head read through per-head top-K page lists
        (gathered pages, the sparse kernel) rather than every page or a contiguous window.
    minmax_bytes_scanned: MinMax metadata the scoring pass read this step (extra HBM traffic).
    h2d_bytes / d2h_bytes: copies to start now.
    is_reloading: the request must skip decode until its H2D copy lands (then call on_reload_done).
    attended_tokens / sparse_tokens: the two per-head figures summed over every head (exact integers: a backend
        sums them over a batch and divides once, so a sum's float value does not depend on how it was grouped).
    """

    request_id: int
    decode_step: int
    device_pages: int
    device_kv_bytes: int
    host_pages: int
    host_kv_bytes: int
    minmax_bytes: int
    attended_tokens_per_head: float = 0.0
    sparse_tokens_per_head: float = 0.0
    minmax_bytes_scanned: int = 0
    h2d_bytes: int = 0
    d2h_bytes: int = 0
    num_promoted_pages: int = 0  # new top-K pages that were not in the old top-K (paper's promoted volume)
    is_reloading: bool = False
    moves: PageMoves | None = None
    attended_tokens: int = 0
    sparse_tokens: int = 0
