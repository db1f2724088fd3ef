"""Moments of one head's rerank counts under the head model, tabulated by Monte Carlo with the exact sampler: per
rank since the first, per-step churn and page count, the mean, variance and covariance of pages fetched and tail kept.

A table belongs to a rank schedule (RankSchedule: the steps and pages between a head's ranks, which the rerank
interval, the page size and where the first rank falls fix) and to the head model's settings (K, recent window,
recent share, churn range). It is built by running sampled_rerank's exact draws over a grid of churns x first page
counts x replicates, one page count when a request first needs it; tessera/kvcache/moment_rerank.py sums its entries
over a request's heads. Tables are cached per process and their grid points on disk (the same key gives the same
table: the draws are seeded from the key and the grid point).
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np

from tessera.kvcache.head_model import HeadBehaviour, HeadModelParams
from tessera.kvcache.sampled_rerank import SampledRerank
from tessera.kvcache.table_cache import cached_arrays

BURN_IN_RANKS = 6  # ranks after the first tabulated one by one; later ones repeat the last period (stationary)
NUM_CHURNS = 40  # grid points of per-step churn, log-spaced over [min_churn, max_churn]
NUM_FIRST_PAGES = 16  # grid points of the page count at the first rank, log-spaced (interpolated in 1 / pages)
REPLICATES = 64  # heads simulated per (churn, page count) grid point
# per rank: means and (co)variances of (fetched, tail kept), and the covariance of fetched with the previous rank's
# (successive ranks of a head share its top-K set: correlation ~0.02-0.05 at churn 0.03-0.3, 0.23 at 0.95; lag 2+ ~0)
STATS = ("mean_fetched", "mean_tail", "var_fetched", "var_tail", "cov", "lag_cov_fetched")


@dataclass(frozen=True, slots=True)
class RankSchedule:
    """A head's ranks after its first one: (steps since the previous rank, pages created since) for each of the
    first `burn_in + period` ranks; rank j > that repeats entry burn_in + (j - burn_in - 1) % period (1-based j)."""

    steps: tuple[tuple[int, int], ...]
    burn_in: int
    period: int

    @classmethod
    def of(cls, interval: int, page_tokens: int, first_step: int, first_tokens: int) -> "RankSchedule":
        """Ranks every `interval` decode steps (step % interval == 0) after a first rank at `first_step` with
        `first_tokens` tokens; the token count advances with the step, a page holds page_tokens tokens."""
        period = page_tokens // math.gcd(interval, page_tokens)
        steps, step, pages = [], first_step, -(-first_tokens // page_tokens)
        nxt = (first_step // interval + 1) * interval
        for _ in range(BURN_IN_RANKS + period):
            new_pages = -(-(first_tokens + nxt - first_step) // page_tokens)
            steps.append((nxt - step, new_pages - pages))
            step, pages, nxt = nxt, new_pages, nxt + interval
        return cls(tuple(steps), BURN_IN_RANKS, period)

    def index(self, j: int) -> int:
        """Table row of rank j (1 = the first rank after the first one)."""
        if j <= len(self.steps):
            return j - 1
        return self.burn_in + (j - self.burn_in - 1) % self.period


class RankMomentTable:
    """Moments of one head's (fetched, tail kept) at each rank, per first-page grid point and churn grid point. A
    grid point's moments are drawn when first needed (`node`, seeded per point), so a run pays only for the page
    counts its requests start at (read back from the on-disk cache when drawn before: tessera/kvcache/table_cache.py);
    `stats` draws them all."""

    def __init__(self, schedule: RankSchedule, log_churn: np.ndarray, first_pages: np.ndarray,
                 draw_node: Callable[[int], dict]) -> None:
        self.schedule = schedule
        self.log_churn = log_churn  # [G] grid of log per-step churn
        self.first_pages = first_pages  # [N] grid of pages at the first rank, increasing
        self._draw_node = draw_node
        self._nodes: dict[int, dict] = {}
        self._stacks: dict[int, np.ndarray] = {}

    def node(self, i: int) -> dict:
        """STATS of first-page grid point i: [ranks, G] each."""
        got = self._nodes.get(i)
        if got is None:
            got = self._nodes[i] = self._draw_node(i)
        return got

    @property
    def stats(self) -> dict:
        """stats[name] [ranks, first-page grid, churn grid], every grid point drawn."""
        nodes = [self.node(i) for i in range(len(self.first_pages))]
        return {name: np.stack([n[name] for n in nodes], 1) for name in STATS}

    def churn_weights(self, log_churn: np.ndarray) -> np.ndarray:
        """[G] summed linear-interpolation weights of heads with these log churns (clipped to the grid)."""
        lo, hi, t = _interp_points(self.log_churn, log_churn)
        size = len(self.log_churn)
        return np.bincount(lo, 1.0 - t, size) + np.bincount(hi, t, size)

    def pages_weights(self, first_pages: int) -> np.ndarray:
        """[N] interpolation weights of a first rank at `first_pages` pages, linear in 1 / pages (clipped)."""
        inverse = 1.0 / self.first_pages[::-1]  # increasing
        return _interp_weights(inverse, np.array([1.0 / first_pages]))[0][::-1]

    def head_sums(self, churn_weights: np.ndarray, pages_weights: np.ndarray) -> np.ndarray:
        """[ranks, len(STATS)] the STATS summed over heads (independent: variances and covariances add)."""
        sums = np.zeros((len(self.schedule.steps), len(STATS)))
        for i in np.flatnonzero(pages_weights):
            sums += pages_weights[i] * (self._stacked(int(i)) @ churn_weights)
        return sums

    def _stacked(self, i: int) -> np.ndarray:
        """[ranks, len(STATS), G] grid point i's STATS in one array (head_sums' one matrix product)."""
        got = self._stacks.get(i)
        if got is None:
            node = self.node(i)
            got = self._stacks[i] = np.stack([node[name] for name in STATS], 1)
        return got


def _interp_points(grid: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lo, hi, t) of each x over an increasing grid (x clipped to its range): weight 1 - t on grid[lo], t on
    grid[hi]."""
    x = np.minimum(np.maximum(x, grid[0]), grid[-1])  # np.clip's values, without its wrapper's cost
    hi = np.minimum(np.maximum(np.searchsorted(grid, x, side="right"), 1), len(grid) - 1)
    lo = hi - 1
    return lo, hi, (x - grid[lo]) / (grid[hi] - grid[lo])


def _interp_weights(grid: np.ndarray, x: np.ndarray) -> np.ndarray:
    """[len(x), len(grid)] linear-interpolation weights over an increasing grid (x clipped to its range)."""
    lo, hi, t = _interp_points(grid, x)
    w = np.zeros((len(x), len(grid)))
    rows = np.arange(len(x))
    np.add.at(w, (rows, lo), 1.0 - t)
    np.add.at(w, (rows, hi), t)
    return w


def table(params: HeadModelParams, k: int, schedule: RankSchedule, max_pages: int, seed: int) -> RankMomentTable:
    """The table for these settings (cached per process; max_pages: the most pages a first rank may have)."""
    return _table(params.min_churn, params.max_churn, params.recent_window_pages, params.recent_share, k,
                  schedule, _page_grid_top(max_pages), seed)


def _page_grid_top(max_pages: int) -> int:
    """Round the grid's top up to a power of two, so runs with similar contexts share a table."""
    return 1 << max(int(max_pages) - 1, 1).bit_length()


@lru_cache(maxsize=64)
def _table(min_churn: float, max_churn: float, window: int, recent_share: float, k: int, schedule: RankSchedule,
           top_pages: int, seed: int) -> RankMomentTable:
    log_churn = np.linspace(math.log(min_churn), math.log(max_churn), NUM_CHURNS)
    low = max(k, window + 1) + 1  # a first rank drawn from the head model has n > K and n >= window + 1 pages
    first_pages = np.unique(np.geomspace(low, max(top_pages, low + 1), NUM_FIRST_PAGES).round().astype(np.int64))
    rows = NUM_CHURNS * REPLICATES
    keep = 1.0 - np.repeat(np.exp(log_churn), REPLICATES)  # per-step keep probability, row by row
    key = zlib.crc32(repr((min_churn, max_churn, window, recent_share, k, schedule, top_pages)).encode())
    params = HeadModelParams(recent_share=recent_share, recent_window_pages=window, min_churn=min_churn,
                             max_churn=max_churn)
    all_rows = np.arange(rows)

    def draw_node(i: int) -> dict:
        """Run the exact sampler over churns x replicates from first_pages[i] pages through the schedule."""
        rng = np.random.default_rng([seed, 5, key, i])
        sampler = SampledRerank(HeadBehaviour(keep[None, :], params, rng), np.zeros(rows, dtype=np.int64),
                                all_rows, k)
        n = int(first_pages[i])
        sampler.rank(all_rows, n, True, np.full(rows, n), np.zeros(rows, dtype=np.int64),
                     np.ones(rows, dtype=np.int64))
        size = np.full(rows, k, dtype=np.int64)
        fetched = np.zeros((len(schedule.steps), NUM_CHURNS, REPLICATES))
        tail = np.zeros_like(fetched)
        for j, (steps_since, shift) in enumerate(schedule.steps):
            ranked = np.full(rows, n)
            n += shift
            c = sampler.rank(all_rows, n, False, ranked, size, np.full(rows, steps_since))
            fetched[j] = c.fetched.reshape(NUM_CHURNS, REPLICATES)
            # tail pages in the new set: promoted pages that were on device already (created since the last rank)
            tail[j] = (c.promoted - c.fetched).reshape(NUM_CHURNS, REPLICATES)
        # unbiased (co)variances over the replicates (ddof 1: with 64 replicates the plain mean of squares is 1.6% low)
        fetched_dev = fetched - fetched.mean(-1, keepdims=True)
        tail_dev = tail - tail.mean(-1, keepdims=True)
        lag_cov = np.zeros(fetched.shape[:-1])  # the first tabulated rank follows the first rank, which fetches none
        lag_cov[1:] = (fetched_dev[1:] * fetched_dev[:-1]).sum(-1) / (REPLICATES - 1)
        return {"mean_fetched": fetched.mean(-1), "mean_tail": tail.mean(-1), "var_fetched": fetched.var(-1, ddof=1),
                "var_tail": tail.var(-1, ddof=1), "cov": (fetched_dev * tail_dev).sum(-1) / (REPLICATES - 1),
                "lag_cov_fetched": lag_cov}

    settings = repr((min_churn, max_churn, window, recent_share, k, schedule, top_pages, seed))
    return RankMomentTable(schedule, log_churn, first_pages,
                           lambda i: cached_arrays(f"{settings}|{i}", STATS, lambda: draw_node(i)))
