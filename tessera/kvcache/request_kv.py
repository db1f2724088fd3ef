"""Per-request KV page state under any HeadPlan: which pages of each (layer, KV head) live on device/host.

The backend (simulator or runtime) calls, in order: on_prefill_done, then on_decode_step once per
decode step (and on_reload_done when a reload's H2D copy lands), and on_finish (or on_preempt).
Counters are kept as aggregates so a step that neither fills a page nor reranks costs O(1); page
sets are touched only at reranks, with numpy over all heads being ranked (request_ranks.py, a mixin).
"""
from __future__ import annotations

import numpy as np

from tessera.kvcache.head_plan import HeadMode, HeadPlan
from tessera.kvcache.plan_layout import plan_layout
from tessera.kvcache.quiet_steps import QuietSteps
from tessera.kvcache.request_ranks import RequestRanks
from tessera.kvcache.rerank_batch import RankJob, RankTotals
from tessera.kvcache.summary import PageMoves, StepSummary, empty_pages
from tessera.kvcache.topk import TopKSource


class RequestKV(RequestRanks, QuietSteps):
    """Page accounting of one request.

    Invariants (tested): every page of an OFFLOAD head is on device or on host, never lost; a full
    OFFLOAD page is written to host exactly once; a ranked OFFLOAD head holds exactly its top-K plus
    its tail (pages created since its last rerank) once any reload has landed; only pages promoted
    into the top-K and not already on device are copied H2D; non-OFFLOAD heads never touch the host;
    the current (last) page is always attended.

    Rerank semantics follow the authors' code (flexicache.md §2.2): at decode step n the OFFLOAD heads
    due (n == 1, n % interval == 0, or the first step after a preemption) get a new top-K; at n == 1
    (and after preemption) the new set is used at once and non-selected pages leave the device;
    otherwise the step still attends the old set + tail, and the new set is used once its H2D copy
    has landed (the request stalls meanwhile: `is_reloading`).
    """

    def __init__(self, plan: HeadPlan, request_id: int, prompt_tokens: int,
                 topk_source: TopKSource | None = None, track_pages: bool = True) -> None:
        if prompt_tokens < 1:
            raise ValueError(f"request {request_id}: prompt_tokens={prompt_tokens} is invalid: use >= 1")
        g = plan.geometry
        self.plan = plan
        self.request_id = request_id
        self.prompt_tokens = prompt_tokens
        self.topk_source = topk_source
        self.track_pages = track_pages
        self.num_tokens = 0  # tokens whose KV exists
        self.decode_step = 0  # n = tokens generated and written so far
        self.num_host_pages = 0  # pages [0, num_host_pages) of every OFFLOAD head are on host
        self.phase = "waiting"  # waiting -> decoding <-> reloading -> finished
        self._page = g.page_tokens
        self._k = plan.topk_pages
        layout = plan_layout(plan)
        self._num_full, self._num_topk = layout.num_full, layout.num_topk
        self._win_layers, self._win_heads = layout.win_layers, layout.win_heads
        self._off_layers, self._off_heads = layout.off_layers, layout.off_heads
        n_off = len(self._off_layers)
        self._rows_by_interval = layout.rows_by_interval
        self._only_interval = next(iter(self._rows_by_interval), 0)  # the rerank interval when there is one
        self._all_rows = layout.all_rows
        self._no_rows = self._all_rows[:0]
        # scalars of the hot path (one decode step of one request)
        self._n_off = n_off
        self._n_win = len(self._win_layers)
        self._win_kept = plan.sink_pages + plan.window_pages
        self._heads_total = g.num_heads_total
        self._page_bytes = g.page_bytes
        self._minmax_page_bytes = g.minmax_bytes_per_page if plan.keeps_minmax else 0
        # OFFLOAD rows: current top-K (-1 pad; allocated when first ranked by page ids), its size, pages at last rank
        # (tail = pages >= ranked)
        self._topk_ids: np.ndarray | None = None
        self._topk_size = np.zeros(n_off, dtype=np.int64)
        self._ranked = np.zeros(n_off, dtype=np.int64)
        self._last_rank_step = np.zeros(n_off, dtype=np.int64)
        self._sum_topk_size = 0
        self._sum_ranked = 0
        self._is_ranked = False  # False until the first rank after (re)prefill: all pages on device
        self._held_pages = 0  # blocks held until the in-flight reload lands (its evicted pages)
        self._held_page_ids = empty_pages()
        self._sampler = None  # SampledRerank: reranks drawn as counts, no page ids (use_sampled_reranks)
        self._pending: RankTotals | None = None  # the next rank, drawn ahead (set_pending_rank)
        self.next_rank_step = 0  # decode step of the next rank once ranked (0 before the first rank)
        self.quiet_fast_path = True  # steps with no rank and no page filled take _quiet_step (tests compare both)

    def use_sampled_reranks(self) -> None:
        """Rerank by counts (tessera/kvcache/sampled_rerank.py): same distribution of promoted, fetched and
        freed pages as the head model's page-id sets, without materialising them; page views are unavailable."""
        from tessera.kvcache.sampled_rerank import SampledRerank

        self._check_counts_source("sampled")
        self._sampler = SampledRerank(self.topk_source, self._off_layers, self._off_heads, self._k)

    def use_moment_reranks(self, max_pages: int, seed: int) -> None:
        """Rerank by request totals drawn from the head model's tabulated moments (tessera/kvcache/moment_rerank.py):
        approximate, O(1) per rank; max_pages bounds the page counts the tables cover, seed seeds their draws."""
        from tessera.kvcache.moment_rerank import MomentRerank

        self._check_counts_source("moments")
        self._sampler = MomentRerank(self.topk_source, self._off_layers, self._off_heads, self._rows_by_interval,
                                     self._k, self._page, max_pages, seed)

    def _check_counts_source(self, mode: str) -> None:
        from tessera.kvcache.head_model import HeadBehaviour

        if not isinstance(self.topk_source, HeadBehaviour):
            raise ValueError(f"request {self.request_id}: {mode} reranks need the head model as topk_source "
                             f"(got {type(self.topk_source).__name__}); use kvpolicy.rerank_mode=pages")
        if self.track_pages:
            raise ValueError(f"request {self.request_id}: {mode} reranks keep no page ids; create the request "
                             "with track_pages=False")

    # ------------------------------------------------------------------------------ ranks drawn ahead
    @property
    def has_pending_rank(self) -> bool:
        return self._pending is not None

    def next_rank_job(self) -> RankJob | None:
        """The next rank as a RankJob when it can be drawn ahead (tessera/kvcache/rerank_batch.py): sampled
        mode, past the first rank, every due row last ranked at the same page count, pages created since and
        more than K pages; else None (on_decode_step then draws it itself)."""
        if (self._sampler is None or not self._sampler.draws_ahead or self._pending is not None
                or not self.next_rank_step):
            return None
        step = self.next_rank_step
        rows = self._due_rows(step)
        if len(rows) == self._n_off:
            rows = slice(None)  # every row (one interval): views instead of gathers
        ranked = self._ranked[rows]
        a = int(ranked[0])
        n = -(-(self.num_tokens + step - self.decode_step) // self._page)
        if a < self._sampler.L or n <= a or n <= self._k or not (ranked == a).all():
            return None
        return RankJob(self._sampler, rows, step, a, n - a, self._topk_size[rows],
                       step - self._last_rank_step[rows])

    def set_pending_rank(self, totals: RankTotals) -> None:
        """Hand over the next rank, drawn by rerank_batch.draw_ranks from next_rank_job(); used at its step."""
        if totals.step != self.next_rank_step:
            raise ValueError(f"request {self.request_id}: a rank drawn for step {totals.step}, the next is at "
                             f"{self.next_rank_step}")
        self._pending = totals

    def _next_due(self, step: int) -> int:
        if len(self._rows_by_interval) == 1:
            r = self._only_interval
            return (step // r + 1) * r
        return min((step // r + 1) * r for r in self._rows_by_interval)

    # ------------------------------------------------------------------------------------- counters
    @property
    def num_pages(self) -> int:
        return -(-self.num_tokens // self._page)

    @property
    def num_offload_heads(self) -> int:
        return len(self._off_layers)

    @property
    def is_reloading(self) -> bool:
        return self.phase == "reloading"

    @property
    def device_pages(self) -> int:
        n = -(-self.num_tokens // self._page)
        pages = (self._num_full + self._num_topk) * n
        pages += self._n_win * min(n, self._win_kept)
        return pages + self._offload_device_pages(n)

    def _offload_device_pages(self, n: int) -> int:
        if not self._is_ranked:
            return self._n_off * n
        return self._sum_topk_size + self._n_off * n - self._sum_ranked + self._held_pages

    @property
    def host_pages(self) -> int:
        return self._n_off * self.num_host_pages

    @property
    def minmax_bytes(self) -> int:
        return self._heads_total * (self.num_tokens // self._page) * self._minmax_page_bytes

    def summary(self, **step) -> StepSummary:
        device, host = self.device_pages, self._n_off * self.num_host_pages
        return StepSummary(self.request_id, self.decode_step, device, device * self._page_bytes, host,
                           host * self._page_bytes, self.minmax_bytes, is_reloading=self.phase == "reloading",
                           **step)

    @property
    def _topk(self) -> np.ndarray:
        """[OFFLOAD rows, K] each head's top-K page ids (-1 pad); counts modes never allocate it."""
        if self._topk_ids is None:
            self._topk_ids = np.full((self._n_off, self._k), -1, dtype=np.int32)
        return self._topk_ids

    # --------------------------------------------------------------------------------------- events
    def on_prefill_done(self, num_tokens: int | None = None) -> StepSummary:
        """The prompt's KV (or prompt + generated, after a preemption) is on device for every head.

        WINDOW heads drop what is outside sink + window; OFFLOAD heads copy every full page to host.
        """
        if self.phase != "waiting":
            raise RuntimeError(f"request {self.request_id}: on_prefill_done in phase {self.phase!r}")
        self.num_tokens = self.prompt_tokens if num_tokens is None else num_tokens
        n = self.num_pages
        moves = PageMoves() if self.track_pages else None
        sink, window = self.plan.sink_pages, self.plan.window_pages
        if moves is not None and len(self._win_layers) and n > sink + window:
            moves.drop = self._pages_of(self._win_layers, self._win_heads, np.arange(sink, n - window))
        full = self.num_tokens // self._page
        d2h_pages = self._write_to_host(full, moves)
        self.phase = "decoding"
        return self.summary(d2h_bytes=d2h_pages * self.plan.geometry.page_bytes, moves=moves)

    def due_heads(self) -> tuple[np.ndarray, np.ndarray]:
        """(layers, heads) of the OFFLOAD heads the next on_decode_step ranks, in the order its `topk` rows use."""
        rows = self._due_rows(self.decode_step + 1)
        return self._off_layers[rows], self._off_heads[rows]

    def on_decode_step(self, topk: np.ndarray | None = None) -> StepSummary:
        """Write one new token, attend, and rerank the OFFLOAD heads that are due.

        Args:
            topk: new top-K ids [m, >= K] for the heads of due_heads() (rows in that order; best first,
                -1 pad); None asks the request's topk_source. Not needed while the request has <= K pages.
        """
        if self.phase != "decoding":
            hint = "; call on_reload_done when its H2D copy lands" if self.is_reloading else ""
            raise RuntimeError(f"request {self.request_id}: on_decode_step in phase {self.phase!r}{hint}")
        page, k = self._page, self._k
        if (self.quiet_fast_path and self.decode_step + 1 < self.next_rank_step and (self.num_tokens + 1) % page
                and topk is None and not self.track_pages):
            return self._quiet_step()
        self.num_tokens += 1
        self.decode_step += 1
        num_tokens = self.num_tokens
        n = -(-num_tokens // page)
        fill = num_tokens - (n - 1) * page  # tokens in the current page, 1..page
        moves = PageMoves() if self.track_pages else None
        kept = self._win_kept
        if moves is not None and self._n_win and fill == 1 and n > kept:
            window = self.plan.window_pages
            moves.drop = self._pages_of(self._win_layers, self._win_heads, np.array([n - window - 1]))
        d2h_pages = self._write_to_host(num_tokens // page, moves) if fill == page or moves is not None else 0

        step = self.decode_step
        # between ranks nothing is due: skip the per-interval test (next_rank_step is the earliest due step)
        rows = self._no_rows if 0 < step < self.next_rank_step else self._due_rows(step)
        num_rows = len(rows)
        first = not self._is_ranked
        attended_off = self._offload_device_pages(n)  # old top-K + tail (the step attends the old set)
        promoted = fetched = 0
        if num_rows:
            promoted, fetched = self._rank(rows, n, first, topk, moves)
            if first:
                attended_off = self._offload_device_pages(n)  # first rank: the new set is used at once

        attended, sparse, scanned = self._attention_terms(num_tokens, attended_off, num_rows)
        heads, page_bytes = self._heads_total, self._page_bytes
        # summary() inlined (this runs once per request per decode step): device pages after any rank
        off_device = self._offload_device_pages(n) if num_rows else attended_off
        device = (self._num_full + self._num_topk) * n + self._n_win * min(n, kept) + off_device
        host = self._n_off * self.num_host_pages
        return StepSummary(self.request_id, step, device, device * page_bytes, host, host * page_bytes,
                           heads * (num_tokens // page) * self._minmax_page_bytes, attended / heads, sparse / heads,
                           scanned, fetched * page_bytes, d2h_pages * page_bytes, promoted,
                           self.phase == "reloading", moves, attended, sparse)

    def _quiet_step(self) -> StepSummary:
        """on_decode_step for the most common step, specialised: ranked, no head due (step < next_rank_step), the
        new token does not fill its page (nothing to copy) and no page ids kept. Same arithmetic, fewer calls."""
        page = self._page
        num_tokens = self.num_tokens = self.num_tokens + 1
        step = self.decode_step = self.decode_step + 1
        n = -(-num_tokens // page)
        off_device = self._offload_device_pages(n)
        attended, sparse, scanned = self._attention_terms(num_tokens, off_device)
        heads, page_bytes = self._heads_total, self._page_bytes
        device = (self._num_full + self._num_topk) * n + self._n_win * min(n, self._win_kept) + off_device
        host = self._n_off * self.num_host_pages
        return StepSummary(self.request_id, step, device, device * page_bytes, host, host * page_bytes,
                           heads * (num_tokens // page) * self._minmax_page_bytes, attended / heads, sparse / heads,
                           scanned, 0, 0, 0, False, None, attended, sparse)

    def _attention_terms(self, num_tokens: int, off_device: int, ranked_rows: int = 0) -> tuple[int, int, int]:
        """(attended tokens, sparse tokens, MinMax bytes scanned) over all heads of a decode step that makes
        num_tokens tokens, its OFFLOAD heads attending off_device pages (top-K + tail) and ranked_rows of them
        scoring pages for a rank."""
        page, k = self._page, self._k
        n = -(-num_tokens // page)
        fill = num_tokens - (n - 1) * page  # tokens in the current page, 1..page
        kept = self._win_kept
        attended = self._num_full * num_tokens
        attended += self._n_win * (num_tokens if n <= kept else (kept - 1) * page + fill)
        sparse = off_device * page - self._n_off * (page - fill)
        if n <= k:  # every page is in the top-K: the dense kernel reads them
            return attended + self._num_topk * num_tokens + sparse, 0, 0
        sparse += self._num_topk * ((k - 1) * page + fill)
        return attended + sparse, sparse, (self._num_topk + ranked_rows) * (n - 1) * self._minmax_page_bytes

    def on_reload_done(self) -> StepSummary:
        """The reload's H2D copy landed: the evicted pages' blocks are released and decoding resumes."""
        self.reload_landed()
        return self.summary()

    def reload_landed(self) -> None:
        """on_reload_done without its StepSummary (a backend that reads the page counts itself)."""
        if self.phase != "reloading":
            raise RuntimeError(f"request {self.request_id}: on_reload_done in phase {self.phase!r}")
        self._held_pages = 0
        self._held_page_ids = empty_pages()
        self.phase = "decoding"

    def on_preempt(self) -> StepSummary:
        """Preempted for recompute: device and host pages are released; the resumed request reranks at once."""
        self._release()
        self.phase = "waiting"
        return self.summary()

    def on_finish(self) -> StepSummary:
        """Release every device page, host page and MinMax entry of the request."""
        self._release()
        self.phase = "finished"
        return self.summary()

    # ----------------------------------------------------------------------------------- page views
    def residency(self) -> tuple[np.ndarray, np.ndarray]:
        """Bool masks [layers, kv_heads, pages]: on device, on host. For tests and debugging, not per step."""
        self._check_page_ids()
        g, n = self.plan.geometry, self.num_pages
        device = np.zeros((g.num_layers, g.num_kv_heads, n), dtype=bool)
        host = np.zeros_like(device)
        if self.phase in ("waiting", "finished"):
            return device, host
        mode = self.plan.mode
        device[(mode == HeadMode.FULL) | (mode == HeadMode.RESIDENT_TOPK)] = True
        win = device[self._win_layers, self._win_heads]
        win[:, : self.plan.sink_pages] = True
        win[:, max(0, n - self.plan.window_pages):] = True
        device[self._win_layers, self._win_heads] = win
        device[self._off_layers, self._off_heads] = self._offload_device_mask(self._all_rows, n)
        held = self._held_page_ids
        device[held[:, 0], held[:, 1], held[:, 2]] = True
        host[self._off_layers, self._off_heads, : self.num_host_pages] = True
        return device, host

    def attended_pages(self, layer: int, head: int) -> np.ndarray | None:
        """Pages the next decode of this head reads; None for RESIDENT_TOPK heads (chosen per step by scores)."""
        self._check_page_ids()
        mode = HeadMode(int(self.plan.mode[layer, head]))
        n = self.num_pages
        if mode == HeadMode.RESIDENT_TOPK:
            return None
        if mode == HeadMode.FULL:
            return np.arange(n)
        if mode == HeadMode.WINDOW:
            sink, window = self.plan.sink_pages, self.plan.window_pages
            return np.union1d(np.arange(min(sink, n)), np.arange(max(0, n - window), n))
        row = np.flatnonzero((self._off_layers == layer) & (self._off_heads == head))
        return np.flatnonzero(self._offload_device_mask(row, n)[0])

    def topk_pages(self, layer: int, head: int) -> np.ndarray:
        """The current top-K set of an OFFLOAD head (sorted; empty before its first rank)."""
        self._check_page_ids()
        row = np.flatnonzero((self._off_layers == layer) & (self._off_heads == head))
        if len(row) == 0:
            raise ValueError(f"head ({layer}, {head}) is not an OFFLOAD head under policy {self.plan.policy}")
        ids = self._topk[row[0]]
        return np.sort(ids[ids >= 0])

    # -------------------------------------------------------------------------------------- helpers
    def _check_page_ids(self) -> None:
        if self._sampler is not None:
            raise RuntimeError(f"request {self.request_id} reranks by counts (sampled mode): it keeps no page ids; "
                               "use kvpolicy.rerank_mode=pages for page views")

    def _due_rows(self, step: int) -> np.ndarray:
        if not self._n_off or not self._is_ranked:
            return self._all_rows
        if len(self._rows_by_interval) == 1:  # one rerank interval (FlexiCache's): its rows or none
            return self._all_rows if step % self._only_interval == 0 else self._no_rows
        due = [rows for r, rows in self._rows_by_interval.items() if step % r == 0]
        if not due:
            return self._no_rows
        return due[0] if len(due) == 1 else np.sort(np.concatenate(due))

    def _offload_device_mask(self, rows: np.ndarray, n: int) -> np.ndarray:
        """Bool [len(rows), n]: top-K + tail of the given OFFLOAD rows (all pages before the first rank)."""
        if not self._is_ranked:
            return np.ones((len(rows), n), dtype=bool)
        mask = np.arange(n)[None, :] >= self._ranked[rows][:, None]
        ids = self._topk[rows]
        r, c = np.nonzero(ids >= 0)
        mask[r, ids[r, c]] = True
        return mask

    def _write_to_host(self, num_full_pages: int, moves: PageMoves | None) -> int:
        """Copy the OFFLOAD heads' newly full pages to host (each page once); returns pages copied."""
        lo = self.num_host_pages
        if num_full_pages <= lo or not len(self._off_layers):
            return 0
        self.num_host_pages = num_full_pages
        if moves is not None:
            moves.d2h = self._pages_of(self._off_layers, self._off_heads, np.arange(lo, num_full_pages))
        return (num_full_pages - lo) * len(self._off_layers)

    def _release(self) -> None:
        if self._sampler is not None:
            self._sampler.reset()
        self.num_tokens = 0
        self.num_host_pages = 0
        if self._topk_ids is not None:
            self._topk_ids[:] = -1
        self._topk_size[:] = 0
        self._ranked[:] = 0
        self._sum_topk_size = self._sum_ranked = 0
        self._is_ranked = False
        self._pending = None
        self.next_rank_step = 0
        self._held_pages = 0
        self._held_page_ids = empty_pages()
