"""Sampled reranks of many requests in one draw: the fixed-interval rank of sampled_rerank.rank_uniform over the
OFFLOAD rows of several requests at once (each with its own page counts), drawn ahead of the step that uses them."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tessera.kvcache.sampled_rerank import SampledRerank, rank_uniform


@dataclass(slots=True)
class RankJob:
    """One request's next rank: its sampler and rows, the step it is due, its page counts at the last rank (a) and
    at the due step (a + shift), the rows' set sizes at the last rank and steps since."""

    sampler: SampledRerank
    rows: np.ndarray | slice  # the OFFLOAD rows ranked (slice(None): all of them)
    step: int
    a: int
    shift: int
    old_size: np.ndarray
    steps_since: np.ndarray


@dataclass(frozen=True, slots=True)
class RankTotals:
    """A drawn rank, summed over the request's ranked rows (every row's new set holds K pages)."""

    step: int
    promoted: int
    fetched: int
    freed: int


def draw_ranks(rng: np.random.Generator, jobs: list[RankJob]) -> list[RankTotals]:
    """Draw every job's rank (one rank_uniform call per distinct shift and head-model setting), store each
    request's new sets in its sampler and return the jobs' totals in order.

    Drawing ahead is exact: a head's next set depends only on its set at its last rank, the pages then and at
    the rank's step and the steps between (head_model.py); none of that changes before the step unless the
    request is preempted, which discards the drawn rank (RequestKV._release)."""
    out: list[RankTotals | None] = [None] * len(jobs)
    keys = [(j.shift, j.sampler.k, j.sampler.window, j.sampler.recent_share) for j in jobs]
    for key in sorted(set(keys)):
        group = [i for i, kk in enumerate(keys) if kk == key]
        part = [jobs[i] for i in group]
        first, shift = part[0].sampler, key[0]
        sizes = np.array([len(j.old_size) for j in part])
        counts, far, near = rank_uniform(
            rng, first.k, first.window, first.recent_share,
            np.concatenate([j.sampler.far[j.rows] for j in part]),
            np.concatenate([j.sampler.near[j.rows] for j in part]),
            np.concatenate([j.sampler.log_keep[j.rows] for j in part]),
            np.repeat(np.array([j.a for j in part], dtype=np.int64), sizes), shift,
            np.concatenate([j.old_size for j in part]), np.concatenate([j.steps_since for j in part]))
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        sums = np.add.reduceat(np.stack([counts.promoted, counts.fetched, counts.freed]), starts, axis=1).tolist()
        for pos, (i, j) in enumerate(zip(group, part)):
            lo, hi = starts[pos], starts[pos] + sizes[pos]
            j.sampler.far[j.rows] = far[lo:hi]
            j.sampler.near[j.rows] = near[lo:hi]
            out[i] = RankTotals(j.step, sums[0][pos], sums[1][pos], sums[2][pos])
    return out
