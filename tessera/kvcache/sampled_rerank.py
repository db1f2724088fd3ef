"""Reranks by counts: the head model's top-K drift sampled as page categories (promoted, fetched H2D, freed), never
as page ids, exact in distribution with HeadBehaviour.select (tessera/kvcache/head_model.py); kvpolicy.rerank_mode."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tessera.kvcache.head_model import HeadBehaviour


@dataclass(slots=True)
class RankCounts:
    """One rerank of m heads: per-head pages promoted, fetched H2D and freed from the device, and set sizes."""

    promoted: np.ndarray  # [m] new set pages not in the old top-K (0 at a first rank)
    fetched: np.ndarray  # [m] new set pages that were on host only (H2D)
    freed: np.ndarray  # [m] device pages (old set + tail) not in the new set
    new_size: np.ndarray  # [m] pages in the new set


class SampledRerank:
    """Per-request state of the OFFLOAD heads' sets as (far count, near mask); rank() draws the next sets.

    Why counts suffice: a head's pages outside the recent window are exchangeable under the head model
    (each set page survives independently with p**d; uniform refills treat them alike), so for them only
    "how many are in the set" matters. Pages near the current one (the recency window, and the tail grown
    since the last rank) are not exchangeable, so they are kept explicitly as a small bool mask per head:
    `near[r, i]` = page `ranked[r] - L + i` was in the head's set at its last rank, L = window + 1.
    A rerank then draws, as select() does: survivors (binomial over the far count, Bernoulli per near
    page), the trim of one survivor when k would be exceeded, recent refills (a random subset of the free
    window pages) and uniform refills (multivariate hypergeometric over far-in-old-set, far-on-host and
    each free near page). Ignores nothing the counts depend on; loses the page ids (residency views).
    """

    def __init__(self, behaviour: HeadBehaviour, layers: np.ndarray, heads: np.ndarray, k: int) -> None:
        self.rng = behaviour.rng
        self.log_keep = np.log(behaviour.keep_prob[layers, heads].astype(np.float64))  # [n_off]
        self.recent_share = behaviour.params.recent_share
        self.window = behaviour.params.recent_window_pages
        self.k = k
        self.L = self.window + 1  # near region at a rank: pages [ranked - L, ranked)
        n_off = len(layers)
        self.far = np.zeros(n_off, dtype=np.int64)  # set pages below ranked - L
        self.near = np.zeros((n_off, self.L), dtype=bool)

    draws_ahead = True  # the next ranks of a batch can be drawn together (tessera/kvcache/rerank_batch.py)
    ranks_by_group = False  # every rank goes through rank_totals (MomentRerank may take later ranks by group)

    def reset(self) -> None:
        self.far[:] = 0
        self.near[:] = False

    def rank_totals(self, rows: np.ndarray, n: int, first: bool, ranked: np.ndarray, old_size: np.ndarray,
                    steps_since: np.ndarray, step: int, num_tokens: int) -> tuple[int, int, int, np.ndarray]:
        """rank() summed over the rows: (promoted, fetched, freed) and each row's new set size (the contract
        RequestKV uses for every counts sampler; step and num_tokens are not needed here)."""
        c = self.rank(rows, n, first, ranked, old_size, steps_since)
        return int(c.promoted.sum()), int(c.fetched.sum()), int(c.freed.sum()), c.new_size

    def rank(self, rows: np.ndarray, n: int, first: bool, ranked: np.ndarray, old_size: np.ndarray,
             steps_since: np.ndarray) -> RankCounts:
        """New sets for `rows` at n pages; ranked/old_size: each row's page count and set size at its last rank."""
        m, k, L = len(rows), self.k, self.L
        if n <= k:  # every page is in the set
            self._store_all(rows, n)
            tail = n - ranked
            zeros = np.zeros(m, dtype=np.int64)
            if first:
                return RankCounts(zeros, zeros, np.full(m, 0, dtype=np.int64), np.full(m, n, dtype=np.int64))
            return RankCounts(tail.astype(np.int64), zeros, (old_size + tail - n).astype(np.int64),
                              np.full(m, n, dtype=np.int64))
        if first and n >= L:  # no old set: only refills (the general path's draws, less the empty ones)
            self.far[rows], self.near[rows] = rank_first(self.rng, k, self.window, self.recent_share, n, m)
            zeros = np.zeros(m, dtype=np.int64)
            return RankCounts(zeros, zeros, np.full(m, n - k, dtype=np.int64), np.full(m, k, dtype=np.int64))
        if not first:
            a0 = int(ranked[0])
            if L <= a0 < n and (ranked == a0).all():  # every row ranked at a0 pages (fixed interval): slices
                return self._rank_uniform(rows, n, a0, old_size, steps_since)
        return self._rank_frame(rows, n, first, ranked, old_size, steps_since)

    def _rank_frame(self, rows: np.ndarray, n: int, first: bool, ranked: np.ndarray, old_size: np.ndarray,
                    steps_since: np.ndarray) -> RankCounts:
        """rank() for n > k in general: per-row masks over a frame of the last L + (largest shift) pages."""
        m, k, L = len(rows), self.k, self.L
        rng = self.rng
        cur = n - 1
        a = np.full(m, n, dtype=np.int64) if first else ranked.astype(np.int64)
        shift = n - a  # pages created since the last rank (the tail, cur included)
        width = L + int(shift.max())
        cols = np.arange(width)
        page = n - width + cols[None, :]  # frame: last column is cur for every row
        lo = np.maximum(a - L, 0)  # far pages: [0, lo)
        valid = (page >= lo[:, None]) & (page >= 0)  # near pages of the frame
        if first:
            old_set = np.zeros((m, width), dtype=bool)
            far_old = np.zeros(m, dtype=np.int64)
        elif shift.min() == width - L:  # every row ranked at the same page count (fixed interval R)
            old_set = np.zeros((m, width), dtype=bool)
            old_set[:, :L] = self.near[rows]
            far_old = self.far[rows]
        else:
            idx = cols[None, :] + shift[:, None] - (width - L)  # frame column -> stored near index
            inside = (idx >= 0) & (idx < L)
            old_set = np.zeros((m, width), dtype=bool)
            rr, cc = np.nonzero(inside)
            old_set[rr, cc] = self.near[rows[rr], idx[rr, cc]]
            far_old = self.far[rows]
        # survivors: each old set page below cur stays with p**d
        q = np.exp(self.log_keep[rows] * np.maximum(steps_since, 1))
        surv_far = rng.binomial(far_old, q)
        eligible = old_set & (page < cur)
        surv = eligible & (rng.random((m, width)) < q[:, None])
        kept = surv_far + surv.sum(1)
        _trim_one_survivor(rng, k, kept, surv_far, surv)  # the old current page became ordinary
        taken = surv.copy()
        taken[:, -1] = True  # cur
        need = (k - 1) - kept
        # recent refills: a random subset of the free window pages [cur - window, cur)
        window = min(self.window, cur)
        in_window = (page >= cur - window) & (page < cur) & valid
        want = rng.binomial(need, self.recent_share)
        free_win = in_window & ~taken
        take = np.minimum(want, free_win.sum(1))
        recent = self._pick(free_win, take, rng)
        taken |= recent
        # uniform refills over [0, cur) minus taken: far (old-set / host) vs each free near page
        u = need - take
        far_free = lo - surv_far
        free_near = valid & ~taken & (page < cur)
        x_far = rng.hypergeometric(far_free, free_near.sum(1), u)
        dropped_far = far_old - surv_far
        x_far_old = rng.hypergeometric(dropped_far, lo - far_old, x_far)
        near_pick = self._pick(free_near, u - x_far, rng)
        new_near = taken | near_pick
        picked = recent | near_pick
        # categories of the new set: old-set pages (not promoted; cur is one when no page was created since),
        # host pages (fetched), tail pages (on device, created since the last rank)
        not_promoted = surv_far + x_far_old + (surv | (picked & old_set)).sum(1) + old_set[:, -1]
        fetched = (x_far - x_far_old) + (picked & ~old_set & (page < a[:, None])).sum(1)
        tail_in = (new_near & (page >= a[:, None])).sum(1)
        new_size = np.full(m, k, dtype=np.int64)
        # store: near = the last L pages of the frame, the rest of the new set joins the far count
        self.far[rows] = surv_far + x_far + new_near[:, : width - L].sum(1)
        self.near[rows] = new_near[:, width - L:]
        if first:
            return RankCounts(np.zeros(m, dtype=np.int64), np.zeros(m, dtype=np.int64),
                              np.full(m, n - k, dtype=np.int64), new_size)
        in_before = not_promoted + tail_in
        return RankCounts(k - not_promoted, fetched, old_size + shift - in_before, new_size)

    def _rank_uniform(self, rows: np.ndarray, n: int, a: int, old_size: np.ndarray,
                      steps_since: np.ndarray) -> RankCounts:
        """rank() when every row last ranked at `a` pages, L <= a < n: the frame's columns are pages
        a - L .. n - 1 for every row, so regions are column slices (old near [0, L), tail [L, width), cur last)
        instead of per-row masks. The same draws as the general path, in fewer numpy calls."""
        counts, self.far[rows], self.near[rows] = rank_uniform(
            self.rng, self.k, self.window, self.recent_share, self.far[rows], self.near[rows], self.log_keep[rows],
            a, n - a, old_size, steps_since)
        return counts

    def _store_all(self, rows: np.ndarray, n: int) -> None:
        self.near[rows] = (n - self.L + np.arange(self.L)) >= 0
        self.far[rows] = max(n - self.L, 0)

    @staticmethod
    def _pick(free: np.ndarray, count: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Bool mask of a uniformly random subset of `count[r]` True cells of each row of `free`."""
        return _pick_columns(free.T, count, rng).T


def _pick_columns(free: np.ndarray, count: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """_pick with rows as columns: free [cells, rows] -> a uniformly random subset of count[r] True cells per row.

    Selection sampling (Knuth's algorithm S) over the few cells, all rows at once: scanning the cells in order, a
    free cell is taken with probability (cells still wanted) / (free cells left); rows taking nothing draw nothing."""
    out = np.zeros(free.shape, dtype=bool)
    num_free = free.sum(0)
    every = (count > 0) & (count >= num_free)  # rows taking all their free cells: no choice to draw
    out[:, every] = free[:, every]
    rows = np.flatnonzero((count > 0) & ~every)
    if not len(rows):
        return out
    cells = np.ascontiguousarray(free[:, rows])  # one contiguous vector per cell
    want = count[rows].astype(np.float64)
    left = num_free[rows].astype(np.float64)
    u = rng.random(cells.shape)
    taken = np.empty_like(cells)
    for j in range(cells.shape[0]):
        col = cells[j]
        take = np.less(u[j] * left, want, out=taken[j])
        take &= col
        want -= take
        left -= col
    out[:, rows] = taken
    return out


def _trim_one_survivor(rng, k: int, kept: np.ndarray, surv_far: np.ndarray, surv: np.ndarray) -> None:
    """Rows keeping more than k - 1 survivors drop one, from the far count or the near mask (in place), chosen in
    proportion to how many each holds. surv: [rows, pages] (or its transpose view for rank_uniform)."""
    excess = np.flatnonzero(kept > k - 1)
    if not len(excess):
        return
    from_far = rng.random(len(excess)) * kept[excess] < surv_far[excess]
    surv_far[excess[from_far]] -= 1
    near_rows = excess[~from_far]
    if len(near_rows):
        keys = np.where(surv[near_rows], rng.random((len(near_rows), surv.shape[1])), np.inf)
        surv[near_rows, keys.argmin(1)] = False
    kept[excess] -= 1


def rank_uniform(rng: np.random.Generator, k: int, window: int, recent_share: float, far_old: np.ndarray,
                 near: np.ndarray, log_keep: np.ndarray, a, shift: int, old_size: np.ndarray,
                 steps_since: np.ndarray) -> tuple[RankCounts, np.ndarray, np.ndarray]:
    """SampledRerank._rank_uniform over any rows (of one request or of many): `a` is each row's page count at its
    last rank (a scalar or an array, every a >= L = window + 1), all rows rank now at a + shift pages (shift >= 1).
    Returns the counts and each row's new (far, near) state.

    Frame masks are held transposed, [frame column, row], so each page position is one contiguous vector and the
    per-row counts are sums of a few vectors (much faster than row-wise reductions over ~17 columns)."""
    m, L = len(far_old), window + 1
    width = L + shift
    q = np.exp(log_keep * np.maximum(steps_since, 1))
    surv_far = rng.binomial(far_old, q)
    near_t = np.ascontiguousarray(near.T)
    taken = np.zeros((width, m), dtype=bool)
    surv = taken[:L]  # a view: survivors among the old near pages (all below cur)
    np.logical_and(near_t, rng.random((L, m)) < q, out=surv)
    kept = surv_far + surv.sum(0)
    _trim_one_survivor(rng, k, kept, surv_far, surv.T)  # the old current page became ordinary
    taken[-1] = True  # cur
    need = (k - 1) - kept
    # recent refills: the window [cur - window, cur) is columns [width - 1 - window, width - 1) (cur >= a >= L)
    lo_w = width - 1 - window
    want = rng.binomial(need, recent_share)
    free_win = ~taken[lo_w: width - 1]
    take = np.minimum(want, free_win.sum(0))
    taken[lo_w: width - 1] |= _pick_columns(free_win, take, rng)
    # uniform refills over [0, cur) minus taken, u pages without replacement from three kinds: far old-set pages
    # that did not survive (dropped), far host-only pages and each free frame page. Drawn as: how many come from
    # the two small kinds (dropped + free frame), then, only where some do, how those split; the same multivariate
    # hypergeometric as drawing far vs frame first, with one full-size draw instead of two.
    u = need - take
    free_near = ~taken[: width - 1]
    dropped = far_old - surv_far
    num_free_near = free_near.sum(0)
    rare = rng.hypergeometric(dropped + num_free_near, (a - L) - far_old, u)
    x_far_old = np.zeros_like(rare)
    some = np.flatnonzero(rare)
    if len(some):
        x_far_old[some] = rng.hypergeometric(dropped[some], num_free_near[some], rare[some])
    x_far = u - rare + x_far_old
    taken[: width - 1] |= _pick_columns(free_near, rare - x_far_old, rng)
    # taken is the new set's frame part; in the old near region it is survivors + refills
    new_old = taken[:L]
    in_old = (new_old & near_t).sum(0)  # old-set pages kept or drawn again: not promoted
    fetched = (x_far - x_far_old) + new_old.sum(0) - in_old  # host-only pages drawn
    tail_in = taken[L:].sum(0)
    new_far = surv_far + x_far + taken[:shift].sum(0)
    not_promoted = surv_far + x_far_old + in_old
    counts = RankCounts(k - not_promoted, fetched, old_size + shift - not_promoted - tail_in,
                        np.full(m, k, dtype=np.int64))
    return counts, new_far, taken[shift:].T


def rank_first(rng: np.random.Generator, k: int, window: int, recent_share: float, n: int,
               m: int) -> tuple[np.ndarray, np.ndarray]:
    """The first rank of m heads at n pages (k < n, n >= L = window + 1), as SampledRerank._rank_frame draws it:
    the current page, then k - 1 refills (recent ones from the window, the rest uniform over [0, cur)).
    Returns each head's (far count, near mask [m, L] over pages n - L .. n - 1)."""
    L = window + 1
    taken = np.zeros((L, m), dtype=bool)  # [page n - L + column, head]; the last column is cur
    taken[-1] = True
    take = np.minimum(rng.binomial(k - 1, recent_share, m), window)  # the window is columns [0, L - 1), all free
    taken[:window] = _pick_columns(np.ones((window, m), dtype=bool), take, rng)
    u = (k - 1) - take
    free_near = ~taken[: L - 1]
    x_far = rng.hypergeometric(np.full(m, n - L), free_near.sum(0), u)
    taken[: L - 1] |= _pick_columns(free_near, u - x_far, rng)
    return x_far, taken.T
