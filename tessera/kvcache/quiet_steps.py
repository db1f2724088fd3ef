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
    page, so device pages grow by one per head, what a backend reserves for a page start)."""

    steps: int
    attended: int
    sparse: int
    attended_slope: int
    sparse_slope: int
    scanned: int
    starts_page: bool = False


class QuietSteps:
    """RequestKV's quiet-stretch methods; they use its counters, plan scalars and step arithmetic (request_kv.py:
    _attention_terms, _offload_device_pages)."""

    def quiet_stretch(self) -> QuietStretch | None:
        """The quiet steps from now on, or None when the next decode step is not one (a rank is due, the new token
        fills a page or starts one under a plan with WINDOW heads, the request is not decoding or not ranked yet,
        or page ids are kept)."""
        if self.phase != "decoding" or not self.next_rank_step or not self.quiet_fast_path or self.track_pages:
            return None
        page = self._page
        in_page = self.num_tokens % page  # 0: the next token starts a page
        if in_page:
            in_page_steps = page - in_page - 1
        else:  # a page start drops a WINDOW head's oldest page: not quiet then
            in_page_steps = 0 if self._n_win else page - 1
        steps = min(self.next_rank_step - self.decode_step - 1, in_page_steps)
        if steps < 1:
            return None
        num_tokens = self.num_tokens + 1
        n = -(-num_tokens // page)
        attended, sparse, scanned = self._attention_terms(num_tokens, self._offload_device_pages(n))
        # within a page every head attends one more token per step; past K pages the top-K and OFFLOAD heads read
        # theirs through page lists (the tests hold both slopes to on_decode_step)
        sparse_slope = self._num_topk + self._n_off if n > self._k else 0
        return QuietStretch(steps, attended, sparse, self._heads_total, sparse_slope, scanned, not in_page)

    def skip_quiet(self, steps: int) -> None:
        """Take `steps` quiet decode steps at once: what that many _quiet_step calls do to the request's state."""
        self.num_tokens += steps
        self.decode_step += steps
