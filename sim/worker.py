"""A serving replica in the simulator: one model on one or more GPUs, with vLLM-style iteration-level batching.

Each loop the worker asks the shared BatchScheduler for a batch, asks its CostModel how long the
iteration takes, waits that long and advances its requests' token counters.
"""
from __future__ import annotations

import math
from array import array
from bisect import bisect_left
from collections import deque
from dataclasses import replace
from typing import TYPE_CHECKING, Callable

import simpy

from tessera.interface import BatchScheduler, BatchShape, CostModel, ScheduledBatch
from tessera.scheduling import FCFSScheduler, make_scheduler
from tessera.types import WorkerSpec
from tessera.sim.admission import KV_FIX, prefill_limit_rejection
from tessera.sim.batch_log import BatchLog, WorkTotals
from tessera.sim.block_pool import BlockPool
from tessera.sim.cohort_steps import CohortSteps
from tessera.sim.decode_cohort import DecodeCohort
from tessera.sim.decode_spans import DecodeSpans
from tessera.sim.kv_cohort import KVDecodeCohort
from tessera.sim.kv_cohort_steps import RUNNING_ORDER, KVCohortSteps
from tessera.sim.sequence import SeqState

if TYPE_CHECKING:
    from tessera.sim.kv_manager import KVManager


class Worker(CohortSteps, DecodeSpans, KVCohortSteps):
    """Owns its SimPy process, its waiting/running queues and its KV block pool.

    Decode-only stretches are simulated as one *span*: when every running request is decoding and
    nobody waits (or, under vLLM v1 FCFS, nobody waiting could be admitted), the iterations up to the
    next finish (or the next KV block shortage) are summed into one timeout, with the exact
    per-iteration times of the cost model. A request arriving mid-span interrupts it (unless FCFS
    could not admit it either: it queues behind a blocked head); the worker finishes the iteration in
    progress and re-plans, so the result is identical to stepping one iteration per event.

    Under vLLM v1 FCFS with full KV the decoding requests form a DecodeCohort (sim/decode_cohort.py): their
    counters advance lazily, so a step in which every running request gets its tokens without preemption costs
    O(requests that prefill, join or leave); any other step writes the cohort back and runs the scheduler itself.

    With a KV manager (a KV policy other than plain full KV) the pool counts head-pages, every
    iteration is one event (each decode step updates the requests' page state) and a request whose
    reload is in flight sits in `stalled` instead of `running` (see sim/kv_manager.py). Under vLLM v1 FCFS with
    a policy that offloads, the decoding requests in a quiet stretch form a KVDecodeCohort (sim/kv_cohort.py): a
    step costs O(requests that rank or fill a page (or start one, with WINDOW heads), prefill, join or leave); a
    step FCFS would not take as a whole writes the cohort back and runs the scheduler itself.
    """

    def __init__(self, env: simpy.Environment, spec: WorkerSpec, cost: CostModel, scheduler: BatchScheduler,
                 num_blocks: int, block_size: int, watermark: float,
                 on_finish: Callable[[SeqState], None], fast_forward: bool = True,
                 compute_lanes: list[simpy.Resource] | None = None, kv: "KVManager | None" = None,
                 decode_cohort: bool = True) -> None:
        self.env = env
        self.spec = spec
        self.worker_id = spec.worker_id
        self.cost = cost
        self.scheduler = scheduler
        self.kv = kv
        self.pool = BlockPool(num_blocks, block_size) if kv is None else kv.pool
        num_blocks = self.pool.num_blocks
        self.max_admissible_blocks = num_blocks - int(watermark * num_blocks)
        self.on_finish = on_finish
        self.fast_forward = fast_forward  # False: one event per iteration (the reference the spans must match)
        # vLLM v1 FCFS admits nobody during a decode span once it admitted nobody at its start: the running count,
        # the token budget and the head's block need stay fixed while free blocks only shrink (FCFSScheduler.admit).
        # So a span may run with requests waiting; other families (e.g. vLLM v0's prefill priority) may not.
        self._span_while_waiting = type(scheduler) is FCFSScheduler
        # vLLM 0.5-0.6 multi-step groups (scheduling/vllm_v0.py): a decode span interrupted by an arrival runs on to
        # its group's end, and tells the scheduler how many steps it ran
        self._multi_step = getattr(scheduler, "group_steps", 1) > 1
        if self._multi_step and kv is not None:
            raise ValueError(f"engine.num_scheduler_steps={scheduler.group_steps} is not modelled with a KV policy "
                             f"(kvpolicy={kv.plan.policy}): use engine.num_scheduler_steps=1")
        # a cost model that reads the longest decoding context (an engine profile's graph_max_context)
        self._reads_context = bool(getattr(cost, "reads_max_context", False))
        if kv is not None and self._reads_context:
            raise ValueError(f"engine_profile.graph_max_context is not modelled with a KV policy "
                             f"(kvpolicy={kv.plan.policy}: its step shapes do not carry the longest context); set it "
                             "to null")
        self.compute_lanes = compute_lanes  # GPUs shared with other replicas: hold them for each iteration
        self.waiting: deque[SeqState] = deque()
        self.running: list[SeqState] = []
        self.outstanding_tokens = 0  # prompt + output tokens of assigned, unfinished requests
        self.busy_s = 0.0
        self.num_iterations = 0
        self.num_preemptions = 0
        self.totals = WorkTotals()  # summed iteration counters (MFU/MBU)
        self.batch_log: BatchLog | None = None  # one entry per iteration (output.batch_log); set by the cluster
        self._unlogged_preemptions = 0  # made by scheduler calls that ran nothing: the next iteration's entry has them
        self.kv_usage_t = array("d")  # typed arrays: 16 bytes a point (decode spans add one per step taking a block)
        self.kv_usage_blocks = array("q")
        self._wakeup: simpy.Event | None = None
        self._in_span = False
        self._span_blocked = False  # the running span started with requests waiting that FCFS could not admit
        self._shape = BatchShape()
        # decode_cohort=False: every step through the scheduler (the reference the cohort must match)
        self._cohort = (DecodeCohort(self.pool, self._reads_context) if decode_cohort and fast_forward and kv is None
                        and compute_lanes is None and self._span_while_waiting and type(self.pool) is BlockPool
                        else None)
        self._kv_cohort = (KVDecodeCohort(kv) if kv is not None and decode_cohort and compute_lanes is None
                           and self._span_while_waiting and kv.num_offload_heads > 0 else None)
        if kv is not None:
            kv.worker = self
            self.fast_forward = False
            self.stalled: set[SeqState] = set()
            self._stall_schedulers: dict[int, BatchScheduler] = {}
        self.process = env.process(self._run() if kv is None else self._run_kv())

    def move_to_new_env(self) -> simpy.Environment:
        """Run in a SimPy environment of its own (Cluster._run_independent), before any event: a fresh process
        there; the one made in the cluster's environment never starts."""
        if self.num_iterations or self.waiting or self.running or self._wakeup is not None:
            raise RuntimeError(f"worker {self.worker_id} has already run; it cannot move to another environment")
        self.env = simpy.Environment()
        self.process = self.env.process(self._run() if self.kv is None else self._run_kv())
        return self.env

    # ------------------------------------------------------------------------------------ admission
    def add(self, seq: SeqState) -> None:
        """Hand a request to this worker (called by the router at its arrival time)."""
        seq.worker_id = self.worker_id
        peak_tokens = seq.num_prompt_tokens + seq.max_output_tokens - 1
        reason = prefill_limit_rejection(seq.num_prompt_tokens, getattr(self.scheduler, "config", None))
        if reason is None and self.kv is not None:
            reason = self.kv.rejection(seq, self.max_admissible_blocks)
        elif reason is None and self.pool.blocks_for_tokens(peak_tokens) > self.max_admissible_blocks:
            reason = (f"rejected: needs {self.pool.blocks_for_tokens(peak_tokens)} KV blocks "
                      f"({peak_tokens} tokens), the pool admits at most {self.max_admissible_blocks}; {KV_FIX}")
        if reason is not None:
            self._reject(seq, reason)
            return
        self.waiting.append(seq)
        self.outstanding_tokens += seq.num_prompt_tokens + seq.max_output_tokens
        if self._wakeup is not None:
            wakeup, self._wakeup = self._wakeup, None
            wakeup.succeed()
        elif self._in_span and not self._span_blocked:  # blocked: FCFS admits from the head, which stays blocked
            self._in_span = False
            self.process.interrupt("arrival")

    def _reject(self, seq: SeqState, reason: str) -> None:
        seq.status = reason
        seq.finish_s = math.nan
        self.on_finish(seq)

    def _reject_unresumable(self, preempted: list[SeqState]) -> int:
        """A preempted request that could never be recomputed would block the queue forever: reject it, as vLLM
        does a prompt too long for its KV cache. Without chunked prefill, its tokens outgrew the step budget; under
        a KV policy, recomputing them needs more head-pages than the pool admits (admission counted the prompt and
        the policy's steady state, but a recompute holds every token's pages until its prefill ends). Returns how
        many it rejected (the caller plans the step again: a rejected head of the queue held the others back)."""
        config = getattr(self.scheduler, "config", None)
        rejected = 0
        for seq in preempted:
            reason = prefill_limit_rejection(seq.num_tokens, config, preempted=True)
            if reason is None and self.kv is not None:
                need = self.pool.blocks_needed(seq, seq.num_tokens)
                if need > self.max_admissible_blocks:
                    reason = (f"rejected: was preempted after {seq.num_tokens:,} tokens and recomputing them needs "
                              f"{need:,} KV head-pages, the pool admits at most {self.max_admissible_blocks:,}; "
                              f"{KV_FIX}")
            if reason is not None and seq in self.waiting:
                self.waiting.remove(seq)
                self.outstanding_tokens -= seq.num_prompt_tokens + seq.max_output_tokens
                self._reject(seq, reason)
                rejected += 1
        return rejected

    def wake(self) -> None:
        """Pages came back or a request resumed: an idle loop re-plans."""
        if self._wakeup is not None:
            wakeup, self._wakeup = self._wakeup, None
            wakeup.succeed()

    def resume(self, seq: SeqState) -> None:
        """A stalled request's reload landed: back into `running` at its admission position."""
        self.stalled.discard(seq)
        self.running.insert(bisect_left(self.running, seq.running_order, key=RUNNING_ORDER), seq)
        if self._kv_cohort is not None:
            self._kv_cohort.others.append(seq)
        self.wake()

    # ------------------------------------------------------------------------------------- the loop
    def _run(self):
        env = self.env
        if self.spec.ready_s > 0:  # model load: requests queue until the replica is up
            yield env.timeout(self.spec.ready_s)
        while True:
            if not self.waiting and not self.running:
                self._wakeup = env.event()
                yield self._wakeup
                continue
            if self.compute_lanes is not None:
                yield from self._shared_iteration()
                continue
            cohort = self._cohort
            if cohort is not None:
                batch = cohort.schedule(self.scheduler, self.waiting, self.running, self.pool)
                if batch is not None:
                    yield from self._cohort_step(batch)
                    continue
                cohort.write_back_all(self.running)
            yield from self._step()
            if cohort is not None and not cohort.rebuild(self.running):
                self._drop_cohort()

    def _step(self):
        """One scheduler call and what it produced: an iteration, or a decode span."""
        env = self.env
        batch = self.scheduler.schedule(self.waiting, self.running, self.pool)
        self._record_usage()
        rejected = 0
        if batch.preempted:
            self.num_preemptions += len(batch.preempted)
            self._mark_preempted(batch.preempted)
            rejected = self._reject_unresumable(batch.preempted)
        if not batch.seqs and (rejected or not self.waiting and not self.running):
            return  # a request the scheduler preempted was rejected: plan again without it (or nothing is left)
        if not batch.seqs:
            raise RuntimeError(
                f"worker {self.worker_id}: scheduler produced an empty batch with {len(self.waiting)} "
                f"waiting and {len(self.running)} running requests (free blocks {self.pool.num_free_blocks})")
        now = env.now
        self._mark_scheduled(batch.seqs, now)
        if (self.fast_forward and (not self.waiting or (self._span_while_waiting and not batch.preempted))
                and self._is_pure_decode(batch) and len(batch.seqs) == len(self.running)):
            self._span_blocked = bool(self.waiting)
            yield from self._decode_span(batch.seqs)
        else:
            shape = self._batch_shape(batch)
            duration = self.cost.iteration_time(shape)
            yield env.timeout(duration)
            self._account(batch, shape, now, duration)
            self._complete_step(batch)

    def _scheduler_kv(self) -> BatchScheduler:
        """Stalled requests still count against max_num_seqs: schedule with that many fewer slots."""
        k = len(self.stalled)
        if k == 0:
            return self.scheduler
        sched = self._stall_schedulers.get(k)
        if sched is None:
            config = self.scheduler.config
            sched = make_scheduler(replace(config, max_num_seqs=max(1, config.max_num_seqs - k)))
            self._stall_schedulers[k] = sched
        return sched

    def _run_kv(self):
        """The loop with a KV manager: one event per iteration, page events after each step."""
        env = self.env
        if self.spec.ready_s > 0:
            yield env.timeout(self.spec.ready_s)
        kv = self.kv
        while True:
            if kv._landings:
                kv.land_reloads()
            idle = not self.waiting and not self.running
            if not idle and not self.running and len(self.stalled) >= self.scheduler.config.max_num_seqs:
                idle = True  # every slot is taken by a reloading request
            if idle:
                kv.arm_landings()
                self._wakeup = env.event()
                yield self._wakeup
                continue
            cohort = self._kv_cohort
            if cohort is not None:
                batch = self._kv_cohort_schedule()
                if batch is not None:
                    yield from self._kv_cohort_iteration(batch)
                    continue
                cohort.write_back_all()
            yield from self._kv_step()
            if cohort is not None:
                cohort.rebuild(self.running)

    def _kv_step(self):
        """One scheduler call over every running request and its iteration (or, with nothing to run, a wait for
        the copy in flight that frees pages or returns a request)."""
        env, kv = self.env, self.kv
        held = []
        if self.compute_lanes is not None:
            for lane in self.compute_lanes:
                request = lane.request()
                yield request
                held.append((lane, request))
            if kv._landings:
                kv.land_reloads()  # reloads that landed while the worker waited for its GPUs
        try:
            batch = self._scheduler_kv().schedule(self.waiting, self.running, self.pool)
            self._record_usage()
            self.num_preemptions += len(batch.preempted)
            self._mark_preempted(batch.preempted)
            rejected = self._reject_unresumable(batch.preempted)
            if batch.seqs:
                now = env.now
                self._mark_scheduled(batch.seqs, now)
                shape = kv.batch_shape(batch, self._shape)
                duration = self.cost.iteration_time(shape)
                yield env.timeout(duration)
                if kv._landings:
                    kv.land_reloads()
                self._account(batch, shape, now, duration)
                for seq in kv.after_step(batch):
                    self.running.remove(seq)
                    self.stalled.add(seq)
                self._complete_step(batch)
        finally:
            for lane, request in held:
                lane.release(request)
        if not batch.seqs:
            self._unlogged_preemptions += len(batch.preempted)
            if rejected:
                return  # a request the scheduler preempted was rejected: plan again without it
            if not kv.has_pending():
                raise RuntimeError(
                    f"worker {self.worker_id}: scheduler produced an empty batch with {len(self.waiting)} "
                    f"waiting and {len(self.running)} running requests (free head-pages "
                    f"{self.pool.num_free_blocks}) and no copy in flight")
            kv.arm_landings()
            self._wakeup = env.event()
            yield self._wakeup

    def _shared_iteration(self):
        """One iteration on GPUs shared with other replicas: take every lane (in GPU id order), run, release."""
        held = []
        for lane in self.compute_lanes:
            request = lane.request()
            yield request
            held.append((lane, request))
        try:
            batch = self.scheduler.schedule(self.waiting, self.running, self.pool)
            self._record_usage()
            self.num_preemptions += len(batch.preempted)
            self._mark_preempted(batch.preempted)
            rejected = self._reject_unresumable(batch.preempted)
            if not batch.seqs and (rejected or not self.waiting and not self.running):
                return  # a preempted request was rejected: plan again (or nothing is left); the lanes go below
            if not batch.seqs:
                raise RuntimeError(f"worker {self.worker_id}: empty batch with {len(self.waiting)} waiting")
            now = self.env.now
            self._mark_scheduled(batch.seqs, now)
            shape = self._batch_shape(batch)
            duration = self.cost.iteration_time(shape)
            yield self.env.timeout(duration)
            self._account(batch, shape, now, duration)
            self._complete_step(batch)
        finally:
            for lane, request in held:
                lane.release(request)

    # ---------------------------------------------------------------------------------- per iteration
    def _mark_preempted(self, preempted: list[SeqState]) -> None:
        now = self.env.now
        for seq in preempted:
            if seq.preempted_at_s != seq.preempted_at_s:  # NaN: not already waiting since an earlier preemption
                seq.preempted_at_s = now

    @staticmethod
    def _mark_scheduled(seqs: list[SeqState], now: float) -> None:
        for seq in seqs:
            if seq.first_scheduled_s != seq.first_scheduled_s:  # NaN: first time scheduled
                seq.first_scheduled_s = now
            elif seq.preempted_at_s == seq.preempted_at_s:  # back after a preemption
                seq.preemption_s += now - seq.preempted_at_s
                seq.preempted_at_s = math.nan
            seq.status = "running"

    def _account(self, batch: ScheduledBatch, shape: BatchShape, start: float, duration: float) -> None:
        """One iteration ran from `start` for `duration`: busy time, totals, the batch log, each request's execution."""
        self.busy_s += duration
        self.num_iterations += 1
        self.totals.add(shape)
        if self.batch_log is not None:
            self.batch_log.add(start, duration, shape, len(batch.preempted) + self._unlogged_preemptions)
        self._unlogged_preemptions = 0
        for seq in batch.seqs:
            seq.execution_s += duration

    @staticmethod
    def _is_pure_decode(batch: ScheduledBatch) -> bool:
        for seq, n in zip(batch.seqs, batch.num_scheduled_tokens):
            if n != 1 or seq.num_generated == 0 or seq.num_tokens - seq.num_computed_tokens != 1:
                return False
        return True

    def _batch_shape(self, batch: ScheduledBatch, decode_seqs: int = 0, decode_kv: int = 0,
                     longest: int = 0) -> BatchShape:
        """The batch's shape; decode_seqs / decode_kv / longest (context) start from what the decode cohort already
        counts."""
        shape = self._shape
        prefill_tokens = prefill_seqs = 0
        prefill_pairs = 0.0
        for seq, n in zip(batch.seqs, batch.num_scheduled_tokens):
            computed = seq.num_computed_tokens
            if n == 1 and seq.num_generated > 0 and seq.num_tokens - computed == 1:
                decode_seqs += 1
                decode_kv += computed + 1
                if computed >= longest:
                    longest = computed + 1
            else:
                prefill_tokens += n
                prefill_seqs += 1
                prefill_pairs += n * computed + n * (n + 1) / 2
        shape.prefill_tokens = prefill_tokens
        shape.prefill_seqs = prefill_seqs
        shape.prefill_attn_pairs = prefill_pairs
        shape.decode_seqs = decode_seqs
        shape.decode_kv_tokens = decode_kv
        shape.decode_max_context = longest
        shape.extra_hbm_bytes = 0.0
        shape.decode_kv_surcharge = 0.0
        return shape

    def _complete_step(self, batch: ScheduledBatch) -> None:
        if self._advance(batch):
            self._retire_finished()

    def _advance(self, batch: ScheduledBatch) -> list[SeqState]:
        """The batch's requests computed their scheduled tokens; one that caught up samples a token. Returns the
        requests that sampled their last one (in batch order)."""
        now = self.env.now
        finished = []
        for seq, n in zip(batch.seqs, batch.num_scheduled_tokens):
            seq.num_computed_tokens += n
            if seq.num_computed_tokens == seq.num_tokens:  # caught up: the model samples a token
                seq.num_generated += 1
                if seq.num_generated == 1:
                    seq.first_token_s = now
                if seq.num_generated >= seq.max_output_tokens:
                    finished.append(seq)
                else:
                    seq.num_tokens += 1
        return finished

    # ------------------------------------------------------------------------------------ bookkeeping
    def _retire_finished(self) -> None:
        now = self.env.now
        still_running = []
        for seq in self.running:
            if seq.num_generated >= seq.max_output_tokens:
                self.pool.free(seq)
                seq.finish_s = now
                seq.status = "finished"
                self.outstanding_tokens -= seq.num_prompt_tokens + seq.max_output_tokens
                self.on_finish(seq)
            else:
                still_running.append(seq)
        self.running[:] = still_running
        self._record_usage()

    def _record_usage(self) -> None:
        self.kv_usage_t.append(self.env.now)
        self.kv_usage_blocks.append(self.pool.num_used_blocks)
