"""Top-K stability (flexicache.md §1.1) and the chunked profiling that picks the unstable heads (§1.2).

RCO(s,t) = max(0, (|S_s & S_t|/K - K/N_t) / (1 - K/N_t)); TS(s) = mean over d = 1..W-1 of RCO(s, s+d);
instability = 1 - TS per head per non-overlapping W-step chunk; valid only where N_t > K.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tessera.kvcache.traces import TopKTrace


def overlap_count(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|A & B| per row of two id arrays [..., K] with -1 pad (ids unique within a row)."""
    both = np.sort(np.concatenate([a, b], axis=-1), axis=-1)
    return ((both[..., 1:] == both[..., :-1]) & (both[..., 1:] >= 0)).sum(-1)


def rco(a: np.ndarray, b: np.ndarray, k: int, num_pages_t: int) -> np.ndarray:
    """Random-corrected overlap of sets a (step s) and b (step t) with N_t = num_pages_t > k."""
    if num_pages_t <= k:
        raise ValueError(f"RCO needs N_t > K; got N_t={num_pages_t}, K={k}")
    chance = k / num_pages_t
    return np.maximum(0.0, (overlap_count(a, b) / k - chance) / (1.0 - chance))


def temporal_stability(trace: TopKTrace, start: int, window: int = 16, k: int | None = None) -> np.ndarray:
    """TS(start) per (layer, head): mean RCO of step `start` with each of the next window - 1 steps."""
    k = k or trace.k
    sets = trace.topk[..., :k]
    return np.mean([rco(sets[start], sets[start + d], k, int(trace.num_pages[start + d]))
                    for d in range(1, window)], axis=0)


def chunk_instability(trace: TopKTrace, window: int = 16, k: int | None = None) -> np.ndarray:
    """1 - TS at each non-overlapping chunk start whose steps all have N_t > K: [chunks, layers, heads]."""
    k = k or trace.k
    steps = trace.topk.shape[0]
    starts = [s for s in range(0, steps - window + 1, window) if trace.num_pages[s] > k]
    shape = trace.topk.shape[1:3]
    if not starts:
        return np.zeros((0,) + shape)
    return np.stack([1.0 - temporal_stability(trace, s, window, k) for s in starts])


@dataclass(slots=True)
class StabilityProfile:
    """Outcome of profiling: the unstable heads and the evidence behind them."""

    unstable_heads: tuple[tuple[int, int], ...]
    frequency: np.ndarray  # [layers, heads]: fraction of selection chunks where the head was in the bottom M
    mean_ts: np.ndarray  # [layers, heads]: mean TS over all chunks
    recall: float  # recall@M of the unstable set on the held-out chunks
    random_recall: float  # M / heads: recall of a random M-set
    num_chunks: int


def profile_unstable_heads(traces: list[TopKTrace], fraction: float = 0.25, window: int = 16,
                           k: int | None = None, seed: int = 0) -> StabilityProfile:
    """The paper's procedure: per chunk the M least stable heads; rank heads by how often they are among
    them on a random half of the chunks; the top M are unstable; recall is measured on the other half."""
    chunks = np.concatenate([chunk_instability(t, window, k) for t in traces])
    if len(chunks) < 2:
        raise ValueError(f"profiling needs at least 2 chunks of {window} steps with more than K pages; "
                         f"got {len(chunks)} (use longer traces or longer prompts)")
    num_chunks, layers, heads = chunks.shape
    total = layers * heads
    m = int(round(fraction * total))
    flat = chunks.reshape(num_chunks, total)
    worst = np.argsort(-flat, axis=1, kind="stable")[:, :m]
    member = np.zeros((num_chunks, total), dtype=bool)
    np.put_along_axis(member, worst, True, axis=1)
    order = np.random.default_rng(seed).permutation(num_chunks)
    select, held_out = order[: num_chunks // 2], order[num_chunks // 2:]
    freq = member[select].mean(0)
    chosen = np.argsort(-freq, kind="stable")[:m]
    recall = float(member[held_out][:, chosen].sum(1).mean() / m) if m else 1.0
    unstable = tuple(sorted((int(i // heads), int(i % heads)) for i in chosen))
    return StabilityProfile(unstable_heads=unstable, frequency=freq.reshape(layers, heads),
                            mean_ts=1.0 - chunks.mean(0), recall=recall,
                            random_recall=m / total, num_chunks=num_chunks)


def ts_of_keep_prob(keep_prob: np.ndarray, window: int = 16) -> np.ndarray:
    """TS the head model predicts for per-step keep probability p: mean of p**d, d = 1..window-1."""
    d = np.arange(1, window)
    return np.mean(np.asarray(keep_prob)[..., None] ** d, axis=-1)


def keep_prob_of_ts(ts: np.ndarray, window: int = 16) -> np.ndarray:
    """Inverse of ts_of_keep_prob (monotone), by interpolation on a fine grid."""
    grid = np.linspace(0.0, 1.0, 20001)
    return np.interp(np.clip(ts, 0.0, 1.0), ts_of_keep_prob(grid, window), grid)
