"""vLLM v0's default scheduler (v0.1-v0.6, chunked prefill off): prefill-first, prefills and decodes never share a batch.

The policy behind most vLLM numbers published in 2023-24 (vllm/core/scheduler.py `_schedule_default`).
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
    """

    name = "vllm_v0"

    def __init__(self, config: SchedulerConfig) -> None:
        self.config = replace(config, chunked_prefill=False, family=self.name)

    def schedule(self, waiting, running: list, pool: KVBlockPool) -> ScheduledBatch:
        batch = ScheduledBatch()
        if waiting:
            self._prefills(waiting, running, pool, batch)
            if batch.seqs:
                return batch
        i = 0
        while i < len(running):
            seq = running[i]
            num_new = seq.num_tokens - seq.num_computed_tokens
            if allocate_or_preempt(seq, num_new, running, waiting, pool, batch):
                schedule(batch, seq, num_new)
                i += 1
        return batch

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
