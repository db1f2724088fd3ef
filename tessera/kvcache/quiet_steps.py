"""A request's quiet stretch: the decode steps ahead that rank no head and fill no page, so nothing but its token
counters changes (and, at a page start, every head's page count). A mixin of RequestKV, for backends that advance
many requests lazily.

Over such a stretch a step's attended and sparse token counts grow by a fixed amount per step and its MinMax scan
is constant: a batching backend (the simulator's KV decode cohort, sim/kv_cohort.py) sums them as affine functions
of the step and takes the whole stretch in one skip_quiet call instead of a StepSummary per step.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class QuietStretch:
    """The next `steps` on_decode_step calls: step j (1-based) attends attended + (j - 1) * attended_slope tokens
    over all heads, of which sparse + (j - 1) * sparse_slope through top-K page lists, and scans `scanned` MinMax
    bytes; they start no copy and leave host and MinMax pages as they are, and device pages too, except that with
    starts_page the first step starts a page on every head (a plan with no WINDOW head: each head keeps its new
    page, so device pages grow by one per head, what a backend reserves for a page start).
    With fill_at (quiet_stretch(through_pages=True)) that holds up to step fill_at, which fills the page (its
    counts still on the line; it copies the page to host: fill_page); every later page starts with a page start
    and its steps follow page_line, each page_tokens-th of them a fill again."""

    steps: int
    attended: int
    sparse: int
    attended_slope: int
    sparse_slope: int
    scanned: int
    starts_page: bool = False
    fill_at: int = 0  # through_pages: the first of the steps that fills a page (0: none in the stretch)


class QuietSteps:
    """RequestKV's quiet-stretch methods; they use its counters, plan scalars and step arithmetic (request_kv.py:
    _attention_terms, _offload_device_pages)."""

    def quiet_stretch(self, through_pages: bool = False) -> QuietStretch | None:
        """The quiet steps from now on, or None when the next decode step is not one (a rank is due, the new token
        fills a page or starts one under a plan with WINDOW heads, the request is not decoding or not ranked yet,
        or page ids are kept).

        through_pages (a plan with no WINDOW head): the stretch runs on to the step before the next rank, across
        the pages it fills (fill_at: its first fill step, 1-based; then every page_tokens steps): a backend takes
        each fill with fill_page and the next page's counts with page_line, and reserves each page start."""
        if self.phase != "decoding" or not self.next_rank_step or not self.quiet_fast_path or self.track_pages:
            return None
        page = self._page
        in_page = self.num_tokens % page  # 0: the next token starts a page
        if in_page:
            in_page_steps = page - in_page - 1
        else:  # a page start drops a WINDOW head's oldest page: not quiet then
            in_page_steps = 0 if self._n_win else page - 1
        to_rank = self.next_rank_step - self.decode_step  # the rank step, 1-based
        fill_at = 0
        if through_pages and not self._n_win and in_page_steps + 1 < to_rank:
            steps, fill_at = to_rank - 1, in_page_steps + 1
        else:
            steps = min(to_rank - 1, in_page_steps)
        if steps < 1:
            return None
        attended, sparse, sparse_slope, scanned = self.page_line(self.num_tokens + 1)
        return QuietStretch(steps, attended, sparse, self._heads_total, sparse_slope, scanned, not in_page, fill_at)

    def page_line(self, num_tokens: int) -> tuple[int, int, int, int]:
        """(attended, sparse, sparse slope, MinMax bytes scanned) of a quiet step making num_tokens tokens and of the
        rest of its page: attended grows by one token per head per step, sparse by the slope (the request's ranks
        as they stand: a lazy backend may call it with its counters behind)."""
        n = -(-num_tokens // self._page)
        attended, sparse, scanned = self._attention_terms(num_tokens, self._offload_device_pages(n))
        # within a page every head attends one more token per step; past K pages the top-K and OFFLOAD heads read
        # theirs through page lists (the tests hold both slopes to on_decode_step)
        return attended, sparse, self._num_topk + self._n_off if n > self._k else 0, scanned

    def fill_page(self, num_tokens: int) -> tuple[int, int, int]:
        """A quiet stretch's fill step, taken by a backend whose counters lag (through_pages): the page that
        num_tokens tokens fill goes to host. Returns (D2H bytes, host KV bytes, MinMax bytes) after it, what
        on_decode_step's summary says at that step."""
        full = num_tokens // self._page
        d2h_pages = self._write_to_host(full, None)
        host = self._n_off * self.num_host_pages
        return d2h_pages * self._page_bytes, host * self._page_bytes, self._heads_total * full * self._minmax_page_bytes

    def skip_quiet(self, steps: int) -> None:
        """Take `steps` quiet decode steps at once: what that many _quiet_step calls do to the request's state."""
        self.num_tokens += steps
        self.decode_step += steps
