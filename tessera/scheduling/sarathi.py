"""Sarathi-Serve (Agrawal et al., OSDI 2024): stall-free batching with chunked prefill under a token budget.

Every step first gives each running decode its token, then fills what is left of the budget with prefill chunks.
"""
from __future__ import annotations

from dataclasses import replace

from tessera.interface import KVBlockPool, ScheduledBatch
from tessera.scheduling.common import admissible, allocate_or_preempt, is_decode, schedule
from tessera.scheduling.config import SchedulerConfig


class SarathiScheduler:
    """Decodes never wait behind a prefill: the token budget (engine.max_num_batched_tokens; the paper's
    "token budget", 512 for strict and 2,048 for relaxed TBT SLOs, sarathi-serve's `chunk_size`) goes to
    (1) every running decode, oldest first, preempting the newest running request by recompute when KV runs
    out; (2) ongoing prefills, chunked; (3) new requests in arrival order, chunked, above the KV watermark.
    No request is admitted in a step that preempted (as in vLLM and sarathi-serve).
    """

    name = "sarathi"

    def __init__(self, config: SchedulerConfig) -> None:
        self.config = replace(config, chunked_prefill=True, family=self.name)

    def schedule(self, waiting, running: list, pool: KVBlockPool) -> ScheduledBatch:
        batch = ScheduledBatch()
        budget = self.config.max_num_batched_tokens
        i = 0
        while i < len(running) and budget > 0:  # (1) decodes
            seq = running[i]
            if not is_decode(seq):
                i += 1
                continue
            if allocate_or_preempt(seq, 1, running, waiting, pool, batch):
                schedule(batch, seq, 1)
                budget -= 1
                i += 1
        if batch.preempted:
            return batch
        scheduled = set(map(id, batch.seqs))
        for seq in running:  # (2) ongoing prefills, no preemption for them: they wait for blocks
            if budget <= 0:
                break
            if id(seq) in scheduled:
                continue
            num_new = min(seq.num_tokens - seq.num_computed_tokens, budget)
            if not pool.allocate(seq, num_new):
                break
            schedule(batch, seq, num_new)
            budget -= num_new
        self._admit(waiting, running, pool, batch, budget)
        return batch

    def _admit(self, waiting, running: list, pool: KVBlockPool, batch: ScheduledBatch, budget: int) -> None:
        watermark_blocks = int(self.config.watermark * pool.num_blocks)
        while waiting and budget > 0 and len(running) < self.config.max_num_seqs:
            seq = waiting[0]
            num_new = min(seq.num_tokens - seq.num_computed_tokens, budget)
            if not admissible(seq, num_new, pool, watermark_blocks) or not pool.allocate(seq, num_new):
                break
            waiting.popleft()
            running.append(seq)
            schedule(batch, seq, num_new)
            budget -= num_new
