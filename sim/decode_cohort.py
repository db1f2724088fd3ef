"""A worker's decode cohort: its running requests that decode one token per iteration, with counters kept lazily.

They advance together, so an iteration or a decode span costs O(requests that join, leave or prefill), not
O(running requests); a member's counters, KV blocks and execution time are written back when it leaves.
"""
from __future__ import annotations

from heapq import heapify, heappop, heappush

from tessera.interface import ScheduledBatch
from tessera.sim.block_pool import BlockPool
from tessera.sim.sequence import SeqState


def fold(total: float, log: list[float], start: int) -> float:
    """total + log[start] + log[start + 1] + ... added left to right (the float sums of adding each duration as it
    happens). A plain loop over a slice: 1.5-6x faster than accumulate over islice, which steps over the skipped
    entries one by one (measured); not sum(), which compensates its rounding from Python 3.12 on."""
    for duration in log[start:]:
        total += duration
    return total


def is_decoding(seq: SeqState) -> bool:
    """Between iterations: it has sampled a token and only that token's KV is missing."""
    return seq.num_generated > 0 and seq.num_tokens - seq.num_computed_tokens == 1


class DecodeCohort:
    """Members: running requests in decode state (is_decoding). After the cohort took `steps` steps, a member that
    joined at step `seq.cohort_base` has its stored counters + (steps - base) tokens computed and generated, and
    holds ceil(computed / block_size) KV blocks (the pool's free count is kept up to date as a total). Its
    execution_s misses `log[seq.cohort_log:]`, the durations of the iterations (or spans) it ran in since it
    joined, added in that order when it leaves, so the float sums are the ones of adding them one by one.

    `others`: the worker's running requests that are not members (prefilling), in running order.
    With track_longest (a cost model that reads BatchShape.decode_max_context), `longest_context` gives the longest
    member's context from a max-heap of offsets whose entries go stale when their member leaves.
    """

    max_log = 4096  # durations kept before they are folded into every member's execution_s

    def __init__(self, pool: BlockPool, track_longest: bool = False) -> None:
        self.pool = pool
        self.track_longest = track_longest
        self._longest: list[tuple[int, int, SeqState]] = []  # (-offset, join id, member): live while the id matches
        self.block_size = pool.block_size
        self.steps = 0
        self.size = 0
        self.offset_sum = 0  # sum over members of (stored num_computed_tokens - base)
        self.residues = [0] * self.block_size  # members by (stored num_computed_tokens - base) mod block_size
        self.finishes: list[tuple[int, int, SeqState]] = []  # (step it samples its last token at, tie, member)
        self.log: list[float] = []
        self.others: list[SeqState] = []
        self._tie = 0

    # ------------------------------------------------------------------------------------ membership
    def join(self, seq: SeqState) -> bool:
        """Add a request in decode state; False (nothing changed) if its KV blocks are not exactly its tokens'."""
        computed = seq.num_computed_tokens
        if seq.num_blocks != -(-computed // self.block_size):
            return False
        seq.cohort_base = self.steps
        seq.cohort_log = len(self.log)
        offset = computed - self.steps
        self.offset_sum += offset
        self.residues[offset % self.block_size] += 1
        self.size += 1
        self._tie += 1
        heappush(self.finishes, (self.steps + seq.max_output_tokens - seq.num_generated, self._tie, seq))
        if self.track_longest:
            seq.cohort_join = self._tie  # an entry pushed at an earlier join of the same request is stale
            if len(self._longest) > 2 * self.size + 64:  # mostly stale: keep the members' entries only
                self._longest = [e for e in self._longest if e[2].cohort_base >= 0 and e[2].cohort_join == e[1]]
                heapify(self._longest)
            heappush(self._longest, (-offset, self._tie, seq))
        return True

    def _write_back(self, seq: SeqState) -> None:
        """Bring a member's counters, blocks and execution time up to date and drop it from the totals."""
        k = self.steps - seq.cohort_base
        offset = seq.num_computed_tokens - seq.cohort_base
        self.offset_sum -= offset
        self.residues[offset % self.block_size] -= 1
        self.size -= 1
        seq.num_computed_tokens += k
        seq.num_generated += k
        # the step that samples the last token adds no token to compute
        seq.num_tokens += k - 1 if seq.num_generated >= seq.max_output_tokens else k
        seq.num_blocks = -(-seq.num_computed_tokens // self.block_size)
        seq.execution_s = fold(seq.execution_s, self.log, seq.cohort_log)
        seq.cohort_base = -1
        if not self.size:
            self.log.clear()

    def pop_finished(self) -> list[SeqState]:
        """Members that sampled their last token by now, written back (their order: the caller's)."""
        done = []
        finishes = self.finishes
        while finishes and finishes[0][0] <= self.steps:
            seq = heappop(finishes)[2]
            self._write_back(seq)
            done.append(seq)
        return done

    def write_back_all(self, running: list[SeqState]) -> None:
        """Every member leaves (before a step the cohort cannot take as a whole); others is cleared too."""
        for seq in running:
            if seq.cohort_base >= 0:
                self._write_back(seq)
        self.finishes.clear()
        self.others.clear()
        self.log.clear()
        self._longest.clear()

    def rebuild(self, running: list[SeqState]) -> bool:
        """Members and others from the running list (after write_back_all and a step taken outside)."""
        for seq in running:
            if is_decoding(seq):
                if not self.join(seq):
                    return False
            else:
                self.others.append(seq)
        return True

    def fold_log(self, running: list[SeqState]) -> None:
        """Add the logged durations to every member's execution_s and empty the log (it only grows otherwise)."""
        log = self.log
        for seq in running:
            if seq.cohort_base >= 0:
                seq.execution_s = fold(seq.execution_s, log, seq.cohort_log)
                seq.cohort_log = 0
        log.clear()

    # ------------------------------------------------------------------------------------ arithmetic
    def blocks(self, first: int, last: int) -> int:
        """KV blocks the members need to grow from computed + first to computed + last tokens (all together)."""
        span = last - first
        if span <= 0 or not self.size:
            return 0
        block = self.block_size
        full, part = divmod(span, block)
        total = full * self.size
        if part:
            # a member needs a block at token u (0-based, past its computed ones) when computed + u is a multiple
            # of the block size; within the last partial lap (u = 0 .. part-1 past the full laps) that is the
            # members whose residue is -(shift + u) mod block: the cyclic window [low, low + part) of residues
            shift = self.steps + first + full * block
            low = (-(shift + part - 1)) % block
            residues = self.residues
            total += sum(residues[low:low + part])
            if low + part > block:
                total += sum(residues[:low + part - block])
        return total

    @property
    def computed_sum(self) -> int:
        """Sum over members of num_computed_tokens now."""
        return self.offset_sum + self.size * self.steps

    def longest_context(self) -> int:
        """The longest member's context at the next step (its computed tokens + 1); 0 without members or without
        track_longest (not tracked)."""
        heap = self._longest
        while heap and (heap[0][2].cohort_base < 0 or heap[0][2].cohort_join != heap[0][1]):
            heappop(heap)  # its member left (a later join pushed a fresh entry)
        return self.steps - heap[0][0] + 1 if heap else 0

    def next_finish(self) -> int:
        """Steps until the first member samples its last token."""
        return self.finishes[0][0] - self.steps

    # ------------------------------------------------------------------------------------ scheduling
    def schedule(self, scheduler, waiting, running: list, pool: BlockPool) -> ScheduledBatch | None:
        """FCFSScheduler.schedule when every running request gets all its tokens and KV without preempting:
        members their one token, others their remaining ones, then admission as FCFS does. Returns the batch of
        others and admitted requests (members are implied), or None (nothing changed) if FCFS would stop early
        or preempt: then the caller writes the members back and runs the scheduler itself."""
        budget = scheduler.config.max_num_batched_tokens
        need_tokens = self.size
        need_blocks = self.residues[(-self.steps) % self.block_size] if self.size else 0
        for seq in self.others:
            remaining = seq.num_tokens - seq.num_computed_tokens
            need_tokens += remaining
            need_blocks += pool.blocks_needed(seq, remaining)
        if need_tokens > budget or need_blocks > pool.num_free_blocks:
            return None
        batch = ScheduledBatch()
        if self.size:
            pool.take(self.residues[(-self.steps) % self.block_size])
        for seq in self.others:
            remaining = seq.num_tokens - seq.num_computed_tokens
            pool.allocate(seq, remaining)
            batch.seqs.append(seq)
            batch.num_scheduled_tokens.append(remaining)
        before = len(running)
        scheduler.admit(waiting, running, pool, batch, budget - need_tokens)
        if not batch.seqs and not self.size:
            return None  # nothing to run (admission changed nothing): the scheduler's own path reports it
        self.others.extend(running[before:])
        return batch
