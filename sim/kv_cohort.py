"""A KV-policy worker's decode cohort: its running requests in a quiet stretch (no rank due), whose token counters,
KV state and per-step cost terms advance lazily; the pages they fill meanwhile go to host without a step of their
own.

An iteration then costs O(requests that rank this step, or fill a page), about 1 in 16 of the decoding ones each
with 16-token pages and a rank interval of 16, not O(running requests); sim/kv_cohort_steps.py drives it.
"""
from __future__ import annotations

from heapq import heappop, heappush
from typing import TYPE_CHECKING

from tessera.sim.decode_cohort import fold
from tessera.sim.sequence import SeqState

if TYPE_CHECKING:
    from tessera.sim.kv_manager import KVManager


class KVDecodeCohort:
    """Members: running requests whose next decode steps are quiet (RequestKV.quiet_stretch). A member that joined
    after cohort step `seq.cohort_base` has, after the cohort took `steps` steps, its stored counters (SeqState and
    RequestKV) + (steps - base) tokens, the same host/MinMax bytes and KV pages (plus, if its first step started a
    page, the pages FCFS allocated for it then: it is in `starters` until that step), and an execution_s missing
    `log[seq.cohort_log:]`. It leaves before its first step that is not quiet (`events`) or after the step that
    samples its last token (`finishes`), whichever comes first; each member has one entry in one of the two heaps.
    Its stretch runs across the pages it fills (quiet_stretch(through_pages=True)) unless page returns wait for
    its copies: a member with a fill ahead has an entry in `fills` (its next fill step); the worker takes the fill
    after that step (take_fills: the page to host, with the batch's page events) and the member goes on, its sums
    on the next page's line and its page start reserved as a starter's.

    The members' attended and sparse tokens at cohort step s (1-based) are attended_a + attended_b * s and
    sparse_a + sparse_b * s, summed over members as exact integers; their MinMax scan is `scanned`.
    `others`: the worker's running requests that are not members (prefilling, or a step that is not quiet ahead).
    """

    max_log = 4096  # durations kept before they are folded into every member's execution_s

    def __init__(self, manager: "KVManager") -> None:
        self.manager = manager
        self._states = manager._states  # request -> the manager's per-request state (its RequestKV, shrink_pending)
        self.steps = 0
        self.size = 0
        self.attended_a = self.attended_b = self.sparse_a = self.sparse_b = self.scanned = 0
        self.events: list[tuple[int, int, SeqState]] = []  # (cohort step it must run outside the cohort, tie, member)
        self.finishes: list[tuple[int, int, SeqState]] = []  # (cohort step that samples its last token, tie, member)
        self.terms: dict[SeqState, tuple[int, int, int, int, int]] = {}  # member -> its share of the five sums
        self.log: list[float] = []
        self.others: list[SeqState] = []
        self.starters: list[SeqState] = []  # members whose next step starts a page: FCFS allocates it (take_starts)
        self.fills: list[tuple[int, int, SeqState]] = []  # (cohort step that fills a page, tie, member)
        # member with fills ahead -> (its next fill step, the last cohort step of its stretch); an entry in `fills`
        # whose step does not match is stale
        self.fills_ahead: dict[SeqState, tuple[int, int]] = {}
        self._page = manager.pool.block_size
        self._tie = 0

    # ------------------------------------------------------------------------------------ membership
    def join(self, seq: SeqState) -> bool:
        """Add a decoding request whose next step is quiet; False (nothing changed) if it is not."""
        if seq.num_generated == 0 or seq.num_tokens - seq.num_computed_tokens != 1:
            return False
        st = self._states[seq]
        # through pages unless a page return waits for its copies (it would count pages by the lagging counters)
        stretch = st.rk.quiet_stretch(through_pages=not st.shrink_pending)
        if stretch is None:
            return False
        if stretch.starts_page and st.shrink_pending:
            # a landing D2H copy would return its pages by RequestKV's page count, which a member's page start
            # changes while its stored counters wait: take that step outside
            return False
        base = self.steps
        seq.cohort_base = base
        seq.cohort_log = len(self.log)
        attended_b, sparse_b = stretch.attended_slope, stretch.sparse_slope
        attended_a, sparse_a = stretch.attended - attended_b * (base + 1), stretch.sparse - sparse_b * (base + 1)
        self.terms[seq] = (attended_a, attended_b, sparse_a, sparse_b, stretch.scanned)
        self.attended_a += attended_a  # the member's share of the five sums (twice per rank interval per request)
        self.attended_b += attended_b
        self.sparse_a += sparse_a
        self.sparse_b += sparse_b
        self.scanned += stretch.scanned
        self.size += 1
        if stretch.starts_page:
            self.starters.append(seq)
        self._tie += 1
        finish = base + seq.max_output_tokens - seq.num_generated
        last = base + stretch.steps
        if finish <= last:
            heappush(self.finishes, (finish, self._tie, seq))
        else:
            heappush(self.events, (last + 1, self._tie, seq))
        if stretch.fill_at and base + stretch.fill_at < finish:  # a fill at its last step copies nothing
            self.fills_ahead[seq] = (base + stretch.fill_at, last)
            heappush(self.fills, (base + stretch.fill_at, self._tie, seq))
        return True

    def _write_back(self, seq: SeqState) -> None:
        """Bring a member's counters, KV state and execution time up to date and drop it from the sums."""
        k = self.steps - seq.cohort_base
        attended_a, attended_b, sparse_a, sparse_b, scanned = self.terms.pop(seq)  # its share leaves the sums
        self.attended_a -= attended_a
        self.attended_b -= attended_b
        self.sparse_a -= sparse_a
        self.sparse_b -= sparse_b
        self.scanned -= scanned
        self.size -= 1
        if self.fills_ahead:
            self.fills_ahead.pop(seq, None)
        seq.num_computed_tokens += k
        seq.num_generated += k
        # the step that samples the last token adds no token to compute
        seq.num_tokens += k - 1 if seq.num_generated >= seq.max_output_tokens else k
        self._states[seq].rk.skip_quiet(k)
        seq.execution_s = fold(seq.execution_s, self.log, seq.cohort_log)
        seq.cohort_base = -1
        if not self.size:
            self.log.clear()

    def pop_due(self) -> None:
        """Members whose next step (cohort step steps + 1) is not quiet leave, written back, into `others`."""
        events, step = self.events, self.steps + 1
        while events and events[0][0] <= step:
            seq = heappop(events)[2]
            self._write_back(seq)
            self.others.append(seq)

    def take_fills(self) -> list[tuple[SeqState, int, int, int]]:
        """Members whose step just taken (cohort step steps + 1) filled a page: the page goes to host (RequestKV
        fill_page at the tokens they have now); each goes on to the next page, its sums on that page's line from
        the next step and its page start reserved (a starter), unless its stretch ends there. Returns (member, D2H
        bytes, host KV bytes, MinMax bytes) for the worker's after_step, which starts the copies in running order."""
        fills, step, out = self.fills, self.steps + 1, []
        while fills and fills[0][0] <= step:
            f, tie, seq = heappop(fills)
            ahead = self.fills_ahead.get(seq)
            if ahead is None or ahead[0] != f:
                continue  # it left (a stale entry)
            rk = self._states[seq].rk
            tokens = rk.num_tokens + (f - seq.cohort_base)  # its stored counters are as of cohort step base
            out.append((seq, *rk.fill_page(tokens)))
            last = ahead[1]
            if f + 1 > last:  # it leaves before the next step (a rank): no page start or line to keep
                del self.fills_ahead[seq]
                continue
            attended, sparse, sparse_slope, scanned = rk.page_line(tokens + 1)
            old_a, attended_b, old_sa, old_sb, old_scanned = self.terms[seq]
            start = f + 1
            new = (attended - attended_b * start, attended_b, sparse - sparse_slope * start, sparse_slope, scanned)
            self.terms[seq] = new
            self.attended_a += new[0] - old_a
            self.sparse_a += new[2] - old_sa
            self.sparse_b += sparse_slope - old_sb
            self.scanned += scanned - old_scanned
            self.starters.append(seq)
            finish = seq.cohort_base + seq.max_output_tokens - seq.num_generated
            nxt = f + self._page
            if nxt <= last and nxt < finish:
                self.fills_ahead[seq] = (nxt, last)
                heappush(fills, (nxt, tie, seq))
            else:
                del self.fills_ahead[seq]
        return out

    def pop_finished(self) -> list[SeqState]:
        """Members that sampled their last token by now (cohort step `steps`), written back."""
        done, finishes = [], self.finishes
        while finishes and finishes[0][0] <= self.steps:
            seq = heappop(finishes)[2]
            self._write_back(seq)
            done.append(seq)
        return done

    def write_back_all(self) -> None:
        """Every member leaves (before a step the cohort cannot take); others is cleared too."""
        for seq in list(self.terms):
            self._write_back(seq)
        self.events.clear()
        self.finishes.clear()
        self.fills.clear()
        self.others.clear()
        self.starters.clear()
        self.log.clear()

    def rebuild(self, running: list[SeqState]) -> None:
        """Members and others from the running list (after write_back_all and a step taken outside)."""
        self.others.clear()  # requests resumed during that step were appended to it; running holds them too
        for seq in running:
            if not self.join(seq):
                self.others.append(seq)

    def fold_log(self) -> None:
        """Add the logged durations to every member's execution_s and empty the log (it only grows otherwise)."""
        log = self.log
        for seq in self.terms:
            seq.execution_s = fold(seq.execution_s, log, seq.cohort_log)
            seq.cohort_log = 0
        log.clear()

    # ------------------------------------------------------------------------------------ the members' step
    def start_pages(self) -> int:
        """Head-pages the members that start a page next step need (FCFS's reservation of their new token: a page
        on every head, pool.blocks_needed(seq, 1) at a page start)."""
        return len(self.starters) * self.manager.pool.num_heads

    def take_starts(self) -> None:
        """Allocate the starting members' pages, as FCFS does for their new token (after start_pages fit; a member
        is never a fresh request, so allocate is grow)."""
        pool = self.manager.pool
        heads = pool.num_heads
        for seq in self.starters:
            if not pool.grow(seq, heads):
                raise AssertionError(f"request {seq.request_id}: a page start did not fit the KV pool")
        self.starters.clear()

    def step_terms(self) -> tuple[int, int, int, int]:
        """(decoding members, attended tokens, sparse tokens, MinMax bytes scanned) of the next step."""
        s = self.steps + 1
        return self.size, self.attended_a + self.attended_b * s, self.sparse_a + self.sparse_b * s, self.scanned
