"""Reranks by request totals (kvpolicy.rerank_mode=moments): each rank's pages fetched and tail kept, summed over
the request's heads, drawn from a normal with the heads' summed moments (tessera/kvcache/rank_moments.py).

Approximate, unlike sampled mode: per head the moments are the head model's own (Monte Carlo over the exact
sampler, interpolated in churn and page count), successive ranks of a request are correlated only at lag 1 (an AR(1)
step on the fetched deviate with the tables' lag-1 covariance), and the sum over heads is taken as normal (hundreds
of heads per rank: tests/sim/test_rerank_modes.py measures the gap). A rank costs O(interval groups), not O(heads).
Requests whose first rank has no more than K pages (or fewer than the recent window) rank exactly, with
sampled_rerank (their first sets are the tail, not the head model's refills).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tessera.kvcache.head_model import HeadBehaviour
from tessera.kvcache.rank_moments import RankSchedule, table
from tessera.kvcache.sampled_rerank import SampledRerank


@dataclass(slots=True)
class _Group:
    """The OFFLOAD rows sharing a rerank interval: they rank together, with one schedule and one set of moments."""

    interval: int
    rows: np.ndarray
    log_churn: np.ndarray
    rank: int = 0  # ranks since the first
    first_row: int = 0  # rows[0] as a Python int (the row whose counters the group's rank reads)
    schedule: RankSchedule | None = None
    sums: list | None = None  # per table rank: the STATS summed over the group's heads (Python floats, see set_sums)
    sd_fetched: list | None = None  # per table rank: the sd of fetched pages summed over the group's heads
    draw_terms: list | None = None  # per table rank: what _draw uses (set_sums)
    z_fetched: float = 0.0  # the last rank's fetched pages as a standard normal deviate (0 after the first rank)

    def set_sums(self, sums: np.ndarray) -> None:
        """[table ranks, len(STATS)] moments summed over the group's heads; kept as Python floats (a draw is a few
        float operations, which numpy scalars make several times slower), with each rank's draw constants: the sd
        of fetched pages, and tail kept given fetched (regression slope on the fetched deviate, residual sd)."""
        self.sums = sums.tolist()
        self.sd_fetched = [math.sqrt(max(row[2], 0.0)) for row in self.sums]
        self.draw_terms = []
        for (mean_f, mean_t, var_f, var_t, cov, lag_cov), sd_f in zip(self.sums, self.sd_fetched):
            if sd_f > 0:
                slope, residual = cov / sd_f, math.sqrt(max(var_t - cov * cov / var_f, 0.0))
            else:
                slope, residual = 0.0, math.sqrt(max(var_t, 0.0))
            self.draw_terms.append((mean_f, sd_f, mean_t, slope, residual, lag_cov))


NORMALS_BLOCK = 64  # standard normals a request draws at once (two per group rank)


class MomentRerank:
    """Per-request rank totals; rank_totals() has SampledRerank.rank_totals' contract (totals, new set sizes)."""

    draws_ahead = False  # each rank is drawn at its step, O(1) per interval group

    def __init__(self, behaviour: HeadBehaviour, layers: np.ndarray, heads: np.ndarray,
                 rows_by_interval: dict[int, np.ndarray], k: int, page_tokens: int, max_pages: int, seed: int) -> None:
        """rows_by_interval: the OFFLOAD rows (indices into layers / heads) of each rerank interval."""
        self.behaviour = behaviour
        self.rng = behaviour.rng
        self.layers, self.heads = layers, heads
        self.k = k
        self.page_tokens = page_tokens
        self.max_pages = max_pages
        self.seed = seed
        self.L = behaviour.params.recent_window_pages + 1
        churn = np.log1p(-behaviour.keep_prob[layers, heads].astype(np.float64))  # log per-step churn
        self.groups = [_Group(int(r), rows, churn[rows], first_row=int(rows[0]))
                       for r, rows in rows_by_interval.items()]
        self.exact: SampledRerank | None = None  # this request ranks exactly (see the module's docstring)
        self._normals: list[float] = []  # standard normals drawn NORMALS_BLOCK at a time from rng, used in order
        self._next_normal = 0

    def reset(self) -> None:
        """Preempted or finished: the next rank is a first one again. The normals drawn ahead stay: they are the
        rng's next values either way (an exact first rank after a drawn one would see the rng ahead by up to a
        block, but a request's first-rank page count only grows, so it never ranks exactly after a drawn rank)."""
        self.exact = None
        for g in self.groups:
            g.rank, g.schedule, g.sums, g.sd_fetched, g.draw_terms, g.z_fetched = 0, None, None, None, None, 0.0

    def rank_totals(self, rows: np.ndarray, n: int, first: bool, ranked: np.ndarray, old_size: np.ndarray,
                    steps_since: np.ndarray, step: int, num_tokens: int) -> tuple[int, int, int, np.ndarray]:
        """(promoted, fetched, freed) summed over `rows` (ascending), and each row's new set size, for a rank at decode
        step `step` with `num_tokens` tokens (n pages); ranked / steps_since: each row's pages at its last rank and
        the steps since it."""
        k, m = self.k, len(rows)
        if self.exact is None and first and (n <= k or n < self.L):
            self.exact = SampledRerank(self.behaviour, self.layers, self.heads, k)
        if self.exact is not None:
            return self.exact.rank_totals(rows, n, first, ranked, old_size, steps_since, step, num_tokens)
        if first:  # every row ranks; nothing is fetched (all pages are on device), the pages beyond K are freed
            for g in self.groups:
                g.rank, g.z_fetched = 0, 0.0
                g.schedule = RankSchedule.of(g.interval, self.page_tokens, step, num_tokens)
                t = table(self.behaviour.params, k, g.schedule, self.max_pages, self.seed)
                g.set_sums(t.head_sums(t.churn_weights(g.log_churn), t.pages_weights(n)))
            return 0, 0, m * (n - k), np.full(m, k, dtype=np.int64)
        rows_list = rows.tolist() if len(self.groups) > 1 else None

        def counters(g: _Group) -> tuple[int, int]:  # the group's rows rank together: any one tells its counts
            pos = rows_list.index(int(g.rows[0])) if rows_list is not None else 0
            return int(steps_since[pos]), int(ranked[pos])

        promoted, fetched, shifted, ranked_rows = self._rank_due_groups(step, n, counters)
        if ranked_rows != m:
            raise RuntimeError(f"rerank_mode=moments: {m} rows rank at step {step}, their interval groups hold "
                               f"{ranked_rows}")
        # per row: new set = kept old pages + tail kept + fetched (K); freed = old set + tail - (kept + tail kept)
        freed = int(old_size.sum()) + shifted - k * m + fetched
        return promoted, fetched, freed, np.full(m, k, dtype=np.int64)

    @property
    def ranks_by_group(self) -> bool:
        """Past a first rank drawn from the tables: every set holds K pages and rank_groups may take the rank."""
        return self.exact is None and self.groups[0].sums is not None

    def rank_groups(self, step: int, n: int, ranked: np.ndarray,
                    last_rank_step: np.ndarray) -> tuple[int, int, int, int]:
        """rank_totals past the first rank (ranks_by_group), reading each due group's counters from one of its rows
        in the request's per-row arrays (pages at its last rank, step of its last rank): (promoted, fetched, pages
        created since the last rank summed over the ranked rows, rows ranked); freed = fetched + that sum, new
        sizes stay K."""
        return self._rank_due_groups(step, n, None, ranked, last_rank_step)

    def _rank_due_groups(self, step: int, n: int, counters, ranked: np.ndarray | None = None,
                         last_rank_step: np.ndarray | None = None) -> tuple[int, int, int, int]:
        """Draw the rank of every group due at `step`: (promoted, fetched, pages created since the last rank, rows
        ranked), all summed; counters(group) gives its (steps, pages at) since its last rank, or (counters None)
        the per-row arrays do, read at the group's first row."""
        fetched = tail = shifted = ranked_rows = 0
        for g in self.groups:
            if step % g.interval:
                continue
            g.rank += 1
            idx = g.schedule.index(g.rank)
            if counters is None:
                row = g.first_row
                since, last = step - int(last_rank_step[row]), int(ranked[row])
            else:
                since, last = counters(g)
            shift = n - last
            if (since, shift) != g.schedule.steps[idx]:
                raise RuntimeError(f"rerank_mode=moments: a rank {since} steps and {shift} pages after the last, "
                                   f"its schedule says {g.schedule.steps[idx]}; use kvpolicy.rerank_mode=sampled")
            f, t = self._draw(g, idx, shift)
            fetched += f
            tail += t
            shifted += len(g.rows) * shift
            ranked_rows += len(g.rows)
        return fetched + tail, fetched, shifted, ranked_rows

    def _draw(self, g: _Group, idx: int, shift: int) -> tuple[int, int]:
        """(fetched, tail kept) over the group's heads at table row idx: bivariate normal with the summed moments,
        fetched correlated with the group's previous rank as its heads are (an AR(1) step on the deviate: lag-1
        covariance from the table), rounded and clipped to what heads can hold (fetched <= K - 1 each: the current
        page is on device; tail kept in [1, shift] each, the current page always in the set, or 0 when no page was
        created)."""
        heads = len(g.rows)
        mean_f, sd_f, mean_t, slope, residual, lag_cov = g.draw_terms[idx]
        z0, z1 = self._two_normals()
        if g.rank > 1 and lag_cov > 0 and sd_f > 0:
            prev_sd = g.sd_fetched[g.schedule.index(g.rank - 1)]
            if prev_sd > 0:
                rho = min(lag_cov / (sd_f * prev_sd), 1.0)
                z0 = rho * g.z_fetched + math.sqrt(1.0 - rho * rho) * z0
        g.z_fetched = z0
        f = mean_f + sd_f * z0
        t = mean_t + (slope * z0 + residual * z1 if sd_f > 0 else residual * z1)
        fetched = min(max(round(f), 0), heads * (self.k - 1))
        tail = min(max(round(t), heads if shift else 0), heads * shift)
        return fetched, tail

    def _two_normals(self) -> tuple[float, float]:
        """The request's next two standard normals (its rng's stream, drawn a block at a time)."""
        i = self._next_normal
        if i + 2 > len(self._normals):
            self._normals = self.rng.standard_normal(NORMALS_BLOCK).tolist()
            i = 0
        self._next_normal = i + 2
        normals = self._normals
        return normals[i], normals[i + 1]
