"""A worker's decode spans: while nobody arrives or finishes, its running requests' pure-decode iterations as one
timeout (the same iteration times, counters and batch log as one event per iteration), cut short by an arrival.
"""
from __future__ import annotations

from bisect import bisect_left

import simpy

from tessera.sim.sequence import SeqState
from tessera.sim.span_times import span_times
from tessera.sim.timeouts import timeout_at


class DecodeSpans:
    """Worker methods for decode spans (a mixin of Worker); they use its env, cost, pool, counters and batch log."""

    def _span_length(self, seqs: list[SeqState]) -> int:
        """Iterations until the first request finishes or the pool cannot give the next KV block."""
        max_steps = min(seq.max_output_tokens - seq.num_generated for seq in seqs)
        block = self.pool.block_size
        free = self.pool.num_free_blocks
        computed = [seq.num_computed_tokens for seq in seqs]
        held = [seq.num_blocks for seq in seqs]

        def blocks_needed(steps: int) -> int:
            return sum(max(0, -(-(c + steps) // block) - h) for c, h in zip(computed, held))

        if blocks_needed(max_steps) <= free:
            return max_steps
        lo, hi = 1, max_steps  # step 1 is already allocated by the scheduler
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if blocks_needed(mid) <= free:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def _decode_span(self, seqs: list[SeqState]):
        env = self.env
        steps = self._span_length(seqs)
        shape = self._shape
        shape.prefill_tokens = shape.prefill_seqs = 0
        shape.prefill_attn_pairs = 0.0
        shape.extra_hbm_bytes = 0.0
        shape.decode_seqs = batch_size = len(seqs)
        kv_first = sum(seq.num_computed_tokens for seq in seqs) + batch_size  # KV tokens the first step reads
        start = env.now
        longest = max(seq.num_computed_tokens for seq in seqs) + 1 if self._reads_context else 0
        times = span_times(self.cost, shape, start, batch_size, kv_first, steps, longest)
        times.extend(steps)
        ends = times.ends
        self._in_span = True
        try:
            yield timeout_at(env, ends[-1])  # at the last step's end exactly, as one event per step would end
            self._in_span = False
            done = steps
        except simpy.Interrupt:
            # An arrival: finish the iteration in progress (the first one ending at or after now), and under
            # multi-step scheduling the rest of its group (the scheduler runs only between groups).
            done = bisect_left(ends, env.now) + 1
            if self._multi_step:
                done = min(steps, done + self.scheduler.steps_left_in_group(done - 1))
            if ends[done - 1] > env.now:
                yield timeout_at(env, ends[done - 1])
        if self._multi_step:
            self.scheduler.advance(done - 1)
        busy = self._account_span(start, ends, done, batch_size, kv_first)
        if done > 1:
            block = self.pool.block_size
            adds = [0] * (done + 1)  # adds[i]: blocks step i takes
            for seq in seqs:
                # holding h blocks of c computed tokens, it takes one at step h * block - c + 1 (>= 2: step 1 was
                # allocated by the scheduler), then every block steps
                for i in range(seq.num_blocks * block - seq.num_computed_tokens + 1, done + 1, block):
                    adds[i] += 1
            self._record_span_usage(ends, done, adds.__getitem__)
        for seq in seqs:
            seq.execution_s += busy
        self._apply_decode_steps(seqs, done)

    def _record_span_usage(self, ends, done: int, adds) -> None:
        """The KV usage points one event per iteration records inside a span (its blocks are allocated at the end):
        each step i = 2..done is scheduled at the end of step i - 1 with its adds(i) blocks allocated; a point where
        the used blocks change (the same step function, without the repeats)."""
        used = self.pool.num_used_blocks
        times, blocks = self.kv_usage_t, self.kv_usage_blocks
        for i in range(2, done + 1):
            add = adds(i)
            if add:
                used += add
                times.append(ends[i - 2])
                blocks.append(used)

    def _account_span(self, start: float, ends, done: int, batch_size: int, kv_first: float) -> float:
        """Counters and batch log of the first `done` iterations of a decode span; returns their busy time."""
        busy = ends[done - 1] - start
        self.busy_s += busy
        self.num_iterations += done
        self.totals.add_decode_span(done, batch_size, done * kv_first + batch_size * done * (done - 1) / 2)
        if self.batch_log is not None:
            self.batch_log.add_decode_span(start, ends[:done], batch_size, kv_first)
        return busy

    def _apply_decode_steps(self, seqs: list[SeqState], steps: int) -> None:
        pool = self.pool
        finished = False
        for seq in seqs:
            if not pool.allocate(seq, steps):  # guaranteed by _span_length
                raise AssertionError(f"KV allocation failed inside a decode span for {seq}")
            seq.num_computed_tokens += steps
            seq.num_generated += steps
            if seq.num_generated >= seq.max_output_tokens:
                seq.num_tokens += steps - 1
                finished = True
            else:
                seq.num_tokens += steps
        if finished:
            self._retire_finished()
