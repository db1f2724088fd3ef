"""A request's reranks: the new top-K page sets of its due OFFLOAD heads (given, sampled or drawn ahead), the
promotions and H2D fetches they cost, and the page-id bookkeeping behind them. A mixin of RequestKV.
"""
from __future__ import annotations

import numpy as np

from tessera.kvcache.summary import PageMoves


class RequestRanks:
    """RequestKV's rank methods; they use its top-K arrays, counters and sampler (request_kv.py)."""

    def _rank(self, rows: np.ndarray, n: int, first: bool, given: np.ndarray | None,
              moves: PageMoves | None) -> tuple[int, int]:
        """New top-K for `rows`; returns (promoted pages, pages to fetch H2D).

        Set differences use one bool mask [rows, pages + 1] (column n absorbs the -1 pads) with
        scatter/gather lookups; page lists are extracted only when the backend tracks pages.
        """
        k, m = self._k, len(rows)
        if self._pending is not None and given is None:
            return self._rank_pending(rows, n)
        if self._sampler is not None and given is None:
            return self._rank_sampled(rows, n, first)
        if n <= k:
            new = np.full((m, k), -1, dtype=np.int32)
            new[:, :n] = np.arange(n, dtype=np.int32)
        else:
            if given is None:
                if self.topk_source is None:
                    raise ValueError(f"request {self.request_id}: {m} heads need a new top-K at step "
                                     f"{self.decode_step}; pass topk= or give the request a topk_source")
                prev = None if first else self._topk[rows]
                steps_since = self.decode_step - self._last_rank_step[rows]
                given = self.topk_source.select(self.decode_step, n, self._off_layers[rows],
                                                self._off_heads[rows], prev, steps_since, k)
            new = self._normalise(np.asarray(given), m, n)
        new_valid = new >= 0
        new_cols = np.where(new_valid, new, n)
        row_ix = np.arange(m)[:, None]
        ranked = self._ranked[rows]
        if first:
            before = np.ones((m, n + 1), dtype=bool)
            before_size = np.full(m, n)
            in_before = new_valid
            in_old = np.zeros_like(new_valid)
        else:
            old = self._topk[rows]
            before = np.zeros((m, n + 1), dtype=bool)
            before[row_ix, np.where(old >= 0, old, n)] = True
            tail = np.arange(n + 1)[None, :] >= ranked[:, None]
            tail[:, n] = False
            before |= tail
            before_size = self._topk_size[rows] + (n - ranked)
            in_before = before[row_ix, new_cols] & new_valid
            in_old = in_before & (new < ranked[:, None])  # old top-K pages all precede the old rank's page count
        fetch = new_valid & ~in_before
        num_fetch = int(fetch.sum())
        num_free = int(before_size.sum() - in_before.sum())
        promoted = 0 if first else int((new_valid & ~in_old).sum())
        if moves is not None:
            r, c = np.nonzero(fetch)
            moves.h2d = self._row_page_ids(rows, r, new[r, c])
            before[:, n] = False
            before[row_ix, new_cols] = False
            free_rows, p = np.nonzero(before)
            moves.free = self._row_page_ids(rows, free_rows, p)
        new_size = new_valid.sum(1)
        self._topk[rows] = new
        self._record_rank(rows, n, new_size, int(new_size.sum()))
        if num_fetch:
            # incoming pages reuse evicted blocks; the rest of the evicted blocks go when the copy lands
            self.phase = "reloading"
            self._held_pages = num_free - num_fetch
            if moves is not None:
                self._held_page_ids = self._held_after_reuse(fetch.sum(1), free_rows, moves.free)
        return promoted, num_fetch

    def _rank_sampled(self, rows: np.ndarray, n: int, first: bool) -> tuple[int, int]:
        """_rank by counts: the same counters, drawn by the request's counts sampler (sampled or moments mode)."""
        if not first and self._sampler.ranks_by_group:
            return self._rank_by_group(rows, n)
        promoted, num_fetch, freed, new_size = self._sampler.rank_totals(
            rows, n, first, self._ranked[rows], self._topk_size[rows], self.decode_step - self._last_rank_step[rows],
            self.decode_step, self.num_tokens)
        self._record_rank(rows, n, new_size, int(new_size.sum()))
        if num_fetch:
            self.phase = "reloading"
            self._held_pages = freed - num_fetch
        return promoted, num_fetch

    def _rank_by_group(self, rows: np.ndarray, n: int) -> tuple[int, int]:
        """_rank_sampled for moments mode past its first rank: every set stays at K pages, so only the pages ranked
        over change (what _record_rank does, without gathering the rows' sizes)."""
        step = self.decode_step
        promoted, num_fetch, shifted, ranked_rows = self._sampler.rank_groups(step, n, self._ranked,
                                                                               self._last_rank_step)
        if ranked_rows != len(rows):
            raise RuntimeError(f"request {self.request_id}: {len(rows)} rows rank at step {step}, their interval "
                               f"groups hold {ranked_rows}")
        self._sum_ranked += shifted
        every = slice(None) if ranked_rows == self._n_off else rows  # a slice assigns without gathering indices
        self._ranked[every] = n
        self._last_rank_step[every] = step
        self.next_rank_step = self._next_due(step)
        if num_fetch:
            self.phase = "reloading"
            self._held_pages = shifted  # freed - fetched: the evicted pages beyond those the fetched ones reuse
        return promoted, num_fetch

    def _rank_pending(self, rows: np.ndarray, n: int) -> tuple[int, int]:
        """_rank_sampled with the rank drawn ahead (set_pending_rank): every row's new set holds K pages."""
        t, self._pending = self._pending, None
        if t.step != self.decode_step:
            raise AssertionError(f"request {self.request_id}: rank drawn for step {t.step} used at {self.decode_step}")
        self._record_rank(rows, n, self._k, self._k * len(rows))  # drawn ahead only past the first rank
        if t.fetched:
            self.phase = "reloading"
            self._held_pages = t.freed - t.fetched
        return t.promoted, t.fetched

    def _record_rank(self, rows: np.ndarray, n: int, new_size, new_total: int) -> None:
        """The counters every rank updates: `rows` now hold `new_size` pages (total `new_total`) ranked over n."""
        self._sum_topk_size += new_total - int(self._topk_size[rows].sum())
        self._sum_ranked += n * len(rows) - int(self._ranked[rows].sum())
        self._topk_size[rows] = new_size
        self._ranked[rows] = n
        self._last_rank_step[rows] = self.decode_step
        self._is_ranked = True
        self.next_rank_step = self._next_due(self.decode_step)

    @staticmethod
    def _held_after_reuse(fetch_per_row: np.ndarray, free_rows: np.ndarray, free: np.ndarray) -> np.ndarray:
        """Evicted pages whose blocks stay held until the reload lands: per head, those beyond the ones
        whose blocks the head's incoming pages reuse (a head never fetches more than it evicts).
        free_rows: row of each `free` entry, ascending."""
        starts = np.searchsorted(free_rows, np.arange(len(fetch_per_row)))
        rank_in_row = np.arange(len(free_rows)) - starts[free_rows]
        return free[rank_in_row >= fetch_per_row[free_rows]]

    def _normalise(self, ids: np.ndarray, m: int, n: int) -> np.ndarray:
        """Validate [m, >= K] ids, keep K columns, force the current page in (replacing the worst entry)."""
        k = self._k
        if ids.ndim != 2 or ids.shape[0] != m or ids.shape[1] < min(k, n):
            raise ValueError(f"request {self.request_id}: topk has shape {ids.shape}; expected [{m}, >= {k}] "
                             "(one row per due head, in due_heads() order)")
        ids = ids[:, :k].astype(np.int32, copy=True)
        if ids.min(initial=0) < -1 or ids.max(initial=0) >= n:
            raise ValueError(f"request {self.request_id}: topk page ids must be -1 (pad) or in [0, {n}); "
                             f"got min {ids.min()} max {ids.max()}")
        s = np.sort(ids, axis=1)
        if np.any((s[:, 1:] == s[:, :-1]) & (s[:, 1:] >= 0)):
            raise ValueError(f"request {self.request_id}: a topk row repeats a page id")
        missing = np.flatnonzero(~(ids == n - 1).any(1))
        if len(missing):
            pad = ids[missing] == -1
            slot = np.where(pad.any(1), pad.argmax(1), k - 1)
            ids[missing, slot] = n - 1
        return ids

    def _row_page_ids(self, rows: np.ndarray, r: np.ndarray, pages: np.ndarray) -> np.ndarray:
        """(layer, head, page) for entries (row index into `rows`, page)."""
        return np.stack([self._off_layers[rows][r], self._off_heads[rows][r], pages], axis=1).astype(np.int32)

    @staticmethod
    def _pages_of(layers: np.ndarray, heads: np.ndarray, pages: np.ndarray) -> np.ndarray:
        """(layer, head, page) for every head x every page."""
        out = np.empty((len(layers) * len(pages), 3), dtype=np.int32)
        out[:, 0] = np.repeat(layers, len(pages))
        out[:, 1] = np.repeat(heads, len(pages))
        out[:, 2] = np.tile(pages, len(layers))
        return out
