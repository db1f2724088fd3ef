"""A KV-policy worker's iterations over its decode cohort (sim/kv_cohort.py): quiet members implied, the rest of the
batch stepped one by one; the same iterations, times, page events and records as Worker._kv_step.
"""
from __future__ import annotations

from operator import attrgetter

from tessera.interface import ScheduledBatch

RUNNING_ORDER = attrgetter("running_order")


class KVCohortSteps:
    """Worker methods for the KV loop's steps FCFS takes as a whole; they use the worker's env, cost, pool, KV
    manager, counters, running/waiting/stalled lists and `_kv_cohort`."""

    def _kv_cohort_schedule(self) -> ScheduledBatch | None:
        """FCFSScheduler.schedule when every running request gets its tokens and KV without preempting: members
        one token each (implied), others their remaining tokens (the last running one's prefill chunked to what is
        left of the budget, as FCFS does), then admission. None (nothing allocated) when FCFS would stop early,
        preempt, or has nothing to run: the caller writes the members back and runs the scheduler itself."""
        cohort, pool = self._kv_cohort, self.pool
        cohort.pop_due()
        others = cohort.others
        if len(others) > 1:
            others.sort(key=RUNNING_ORDER)  # running order (admission order; resumed requests go back in it)
        scheduler = self._scheduler_kv()
        config = scheduler.config
        budget = config.max_num_batched_tokens
        tokens = [seq.num_tokens - seq.num_computed_tokens for seq in others]
        need = cohort.size + sum(tokens)
        if need > budget:
            if not others or self.running[-1] is not others[-1] or not config.chunked_prefill:
                return None
            tokens[-1] -= need - budget
            if tokens[-1] < 1:
                return None
            need = budget
        needs = [pool.blocks_needed(seq, n) for seq, n in zip(others, tokens)]
        pages = sum(needs) + (cohort.start_pages() if cohort.starters else 0)
        if pages > pool.num_free_blocks:
            return None
        if cohort.starters:
            cohort.take_starts()
        batch = ScheduledBatch()
        for seq, n, blocks in zip(others, tokens, needs):
            # pool.allocate for a running request (never a fresh one: its reservation was made): grow by what it needs
            if blocks > 0 and not pool.grow(seq, blocks):
                raise AssertionError(f"request {seq.request_id}: {n} tokens' head-pages did not fit although "
                                     f"{pages} were free")
            batch.seqs.append(seq)
            batch.num_scheduled_tokens.append(n)
        before = len(self.running)
        scheduler.admit(self.waiting, self.running, pool, batch, budget - need)
        if not batch.seqs and not cohort.size:
            return None
        others.extend(self.running[before:])
        return batch

    def _kv_cohort_iteration(self, batch: ScheduledBatch):
        """One iteration of the members' quiet decodes beside the batch's requests (as in _kv_step), then the
        members that finished retire and the batch's decoding requests whose next step is quiet join."""
        env, kv, cohort = self.env, self.kv, self._kv_cohort
        if len(cohort.log) > cohort.max_log:
            cohort.fold_log()
        self._record_usage()
        seqs = batch.seqs
        now = env.now
        self._mark_scheduled(seqs, now)
        shape = kv.batch_shape(batch, self._shape, *cohort.step_terms(), decoding=self.running)
        duration = self.cost.iteration_time(shape)
        yield env.timeout(duration)
        if kv._landings:
            kv.land_reloads()  # reloads that landed during the step (sim/kv_reloads.py)
        self._account(batch, shape, now, duration)
        if cohort.size:
            cohort.log.append(duration)
        others = cohort.others
        fills = cohort.take_fills() if cohort.fills else None
        for seq in kv.after_step(batch, fills):
            self.running.remove(seq)
            self.stalled.add(seq)
            others.remove(seq)
        finished = self._advance(batch)
        cohort.steps += 1
        if cohort.size:
            finished += cohort.pop_finished()
        if finished:
            self._retire(finished)
        others[:] = [seq for seq in others if seq.status != "finished" and not cohort.join(seq)]
