"""vLLM v0's default scheduler (v0.1-v0.6, chunked prefill off): prefill-first, prefills and decodes never share a
batch, with v0.5-0.6's multi-step groups. The policy behind most vLLM numbers of 2023-24 (`_schedule_default`).
"""
from __future__ import annotations

from dataclasses import replace

from tessera.interface import KVBlockPool, ScheduledBatch
from tessera.scheduling.common import admissible, allocate_or_preempt, schedule
from tessera.scheduling.config import SchedulerConfig


class VLLMV0Scheduler:
    """Each step: if any waiting request can be admitted, the step runs prefills only (whole prompts, FCFS,
    within max_num_batched_tokens and max_num_seqs, KV blocks for the whole prompt above the watermark);
    otherwise every running request decodes one token, and when KV blocks run out the most recently admitted
    is preempted by recompute (v0's default for single-sequence requests).

    Prefill tokens are summed without padding, as since vLLM v0.2.x (flattened prefill; Vidur's vLLM
    scheduler still counts batch x longest prompt).

    With num_scheduler_steps = N > 1 (vLLM 0.5-0.6's multi-step scheduling: LLMEngine.step runs the scheduler only
    when the previous multi-step batch has no steps left), a decode batch starts a group of N steps in which
    nobody is admitted; prefill steps run alone (vLLM's lookahead slots are 0 for prompts). A request finishing
    inside a group leaves it (vLLM keeps computing its slot to the group's end: not charged here), and KV blocks
    are allocated step by step (vLLM reserves the group's lookahead slots up front).
    """

    name = "vllm_v0"

    def __init__(self, config: SchedulerConfig) -> None:
        self.config = replace(config, chunked_prefill=False, family=self.name)
        self.group_steps = self.config.num_scheduler_steps
        self.group_left = 0  # decode steps left in the running multi-step group after the last scheduled one

    def schedule(self, waiting, running: list, pool: KVBlockPool) -> ScheduledBatch:
        batch = ScheduledBatch()
        in_group = self.group_left > 0 and bool(running)
        if in_group:
            self.group_left -= 1
        else:
            self.group_left = 0
            if waiting:
                self._prefills(waiting, running, pool, batch)
                if batch.seqs:
                    return batch
        self._decodes(waiting, running, pool, batch)
        if batch.seqs:
            if not in_group:
                self.group_left = self.group_steps - 1  # this decode batch starts a group
        elif in_group:  # every member was preempted: the group is over, the scheduler runs
            self.group_left = 0
            if waiting:
                self._prefills(waiting, running, pool, batch)
        return batch

    def advance(self, steps: int) -> None:
        """`steps` more decode steps of the batch last scheduled ran without a scheduler call (a decode span)."""
        if self.group_steps > 1:
            self.group_left = (self.group_left - steps) % self.group_steps

    def steps_left_in_group(self, steps: int) -> int:
        """Decode steps the running group still has after `steps` more steps of the batch last scheduled."""
        return (self.group_left - steps) % self.group_steps if self.group_steps > 1 else 0

    def _decodes(self, waiting, running: list, pool: KVBlockPool, batch: ScheduledBatch) -> None:
        i = 0
        while i < len(running):
            seq = running[i]
            num_new = seq.num_tokens - seq.num_computed_tokens
            if allocate_or_preempt(seq, num_new, running, waiting, pool, batch):
                schedule(batch, seq, num_new)
                i += 1

    def _prefills(self, waiting, running: list, pool: KVBlockPool, batch: ScheduledBatch) -> None:
        config = self.config
        budget = config.max_num_batched_tokens
        watermark_blocks = int(config.watermark * pool.num_blocks)
        while waiting and len(running) < config.max_num_seqs:
            seq = waiting[0]
            num_new = seq.num_tokens - seq.num_computed_tokens
            if num_new > budget or not admissible(seq, num_new, pool, watermark_blocks):
                break
            if not pool.allocate(seq, num_new):
                break
            waiting.popleft()
            running.append(seq)
            schedule(batch, seq, num_new)
            budget -= num_new
