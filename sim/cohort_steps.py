"""A worker's steps over its decode cohort: one iteration (members' decodes beside prefills) or a decode span.

The same iterations, times and records as Worker._step with every running request in the scheduler's batch.
"""
from __future__ import annotations

from bisect import bisect_left

import simpy

from tessera.interface import BatchShape, ScheduledBatch
from tessera.sim.sequence import SeqState
from tessera.sim.span_times import span_times
from tessera.sim.timeouts import reserved_timeout, timeout_at


class CohortSteps:
    """Worker methods for the steps FCFS takes as a whole (see DecodeCohort.schedule); they use the worker's
    env, cost, pool, counters, batch log, running list and `_cohort`."""

    span_chunk = 32  # decode span iteration times computed ahead of the clock (then doubling)

    def _drop_cohort(self) -> None:
        """Give up the lazy counters for good (a request's KV blocks were not exactly its tokens')."""
        self._cohort.write_back_all(self.running)
        self._cohort = None

    def _cohort_step(self, batch: ScheduledBatch):
        """What _step does, with the cohort's members implied in the batch: a span if nobody else runs, else one
        iteration of the members' decodes, the others' remaining tokens and the admitted requests' prefills."""
        env, cohort = self.env, self._cohort
        if len(cohort.log) > cohort.max_log:
            cohort.fold_log(self.running)
        self._record_usage()
        seqs = batch.seqs
        if not seqs:  # every running request decodes and nobody was admitted
            self._span_blocked = bool(self.waiting)
            yield from self._cohort_span()
            return
        now = env.now
        self._mark_scheduled(seqs, now)
        shape = self._cohort_shape(batch)
        duration = self.cost.iteration_time(shape)
        yield env.timeout(duration)
        self.busy_s += duration
        self.num_iterations += 1
        self.totals.add(shape)
        if self.batch_log is not None:
            self.batch_log.add(now, duration, shape, 0)
        for seq in seqs:
            seq.execution_s += duration
        if cohort.size:
            cohort.log.append(duration)
        cohort.steps += 1
        finished = cohort.pop_finished() if cohort.size else []
        now = env.now
        others = cohort.others
        joined_all = True
        for seq, n in zip(seqs, batch.num_scheduled_tokens):
            seq.num_computed_tokens += n
            if seq.num_computed_tokens == seq.num_tokens:  # caught up: the model samples a token
                seq.num_generated += 1
                if seq.num_generated == 1:
                    seq.first_token_s = now
                others.remove(seq)
                if seq.num_generated >= seq.max_output_tokens:
                    finished.append(seq)
                else:
                    seq.num_tokens += 1
                    if not cohort.join(seq):
                        others.append(seq)
                        joined_all = False
        if finished:
            self._retire(finished)
        if not joined_all:
            self._drop_cohort()

    def _cohort_shape(self, batch: ScheduledBatch) -> BatchShape:
        """_batch_shape with the members' decodes from the cohort's totals."""
        cohort = self._cohort
        return self._batch_shape(batch, cohort.size, cohort.computed_sum + cohort.size, cohort.longest_context())

    def _cohort_span_length(self) -> int:
        """_span_length over the cohort: the members' block needs come from their residues, not one by one."""
        cohort = self._cohort
        max_steps = cohort.next_finish()
        free = self.pool.num_free_blocks
        # each member needs at most one block per block_size tokens: most spans need no count at all
        if cohort.size * -(-(max_steps - 1) // cohort.block_size) <= free or cohort.blocks(1, max_steps) <= free:
            return max_steps
        lo, hi = 1, max_steps  # step 1 is already allocated by the scheduler
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if cohort.blocks(1, mid) <= free:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def _cohort_span(self):
        """_decode_span over the cohort (every running request): the same iteration times and events, computed
        span_chunk at a time (doubling) while no arrival cuts the span; then every member takes `done` steps."""
        env, cohort = self.env, self._cohort
        steps = self._cohort_span_length()
        shape = self._shape
        shape.prefill_tokens = shape.prefill_seqs = 0
        shape.prefill_attn_pairs = 0.0
        shape.extra_hbm_bytes = 0.0
        shape.decode_seqs = batch_size = cohort.size
        kv_first = cohort.computed_sum + batch_size  # KV tokens the first step reads
        start = env.now
        times = span_times(self.cost, shape, start, batch_size, kv_first, steps, cohort.longest_context())
        times.extend(self.span_chunk)
        ends = times.ends
        self._in_span = True
        try:
            # at the last step's end exactly (start + duration would round off the summed end times)
            if times.complete:
                yield timeout_at(env, ends[-1])
            else:
                end_of_span = reserved_timeout(env)  # the event one timeout at the start would have been
                while not times.complete:
                    yield timeout_at(env, ends[-1])
                    times.extend(len(ends))
                yield end_of_span(ends[-1])
            self._in_span = False
            done = steps
        except simpy.Interrupt:
            # An arrival: finish the iteration in progress (the first one ending at or after now).
            times.cover(env.now)
            done = bisect_left(ends, env.now) + 1
            if ends[done - 1] > env.now:
                yield timeout_at(env, ends[done - 1])
        busy = self._account_span(start, ends, done, batch_size, kv_first)
        cohort.log.append(busy)
        if done > 1:
            # step i takes a block for the members whose residue is -(steps + i - 1) mod block (DecodeCohort.blocks)
            residues, block, before = cohort.residues, cohort.block_size, cohort.steps - 1
            self._record_span_usage(ends, done, lambda i: residues[-(before + i) % block])
            self.pool.take(cohort.blocks(1, done))
        cohort.steps += done
        finished = cohort.pop_finished()
        if finished:
            self._retire(finished)

    def _retire(self, finished: list[SeqState]) -> None:
        """_retire_finished for the requests that just finished (in running order, as there)."""
        running = self.running
        if len(finished) > 1:
            finished.sort(key=running.index)
        now = self.env.now
        for seq in finished:
            self.pool.free(seq)
            seq.finish_s = now
            seq.status = "finished"
            self.outstanding_tokens -= seq.num_prompt_tokens + seq.max_output_tokens
            self.on_finish(seq)
        for seq in finished:
            running.remove(seq)
        self._record_usage()
