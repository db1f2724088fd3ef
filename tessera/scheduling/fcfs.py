"""vLLM-style first-come-first-served iteration scheduler with chunked prefill and recompute preemption.

Token-counter model (vLLM v1): each step gives every sequence tokens so its num_computed_tokens
catches up with num_tokens; prefill, chunked prefill, decode and resume-after-preemption are one rule.
"""
from __future__ import annotations

from collections import deque

from tessera.interface import KVBlockPool, ScheduledBatch
from tessera.scheduling.common import admissible, allocate_or_preempt
from tessera.scheduling.config import SchedulerConfig


class FCFSScheduler:
    """Running sequences first (oldest first), then admit waiting ones in arrival order.

    When a running sequence cannot get KV blocks, the most recently admitted running sequence is
    preempted (its KV freed, to be recomputed) and put back at the head of the waiting queue.
    No new sequence is admitted in a step that preempted, as in vLLM.
    """

    name = "fcfs"

    def __init__(self, config: SchedulerConfig) -> None:
        self.config = config

    def schedule(self, waiting: deque, running: list, pool: KVBlockPool) -> ScheduledBatch:
        batch = ScheduledBatch()
        budget = self.config.max_num_batched_tokens
        chunked = self.config.chunked_prefill
        i = 0
        while i < len(running) and budget > 0:
            seq = running[i]
            remaining = seq.num_tokens - seq.num_computed_tokens
            num_new = remaining if remaining <= budget else budget
            if num_new < remaining and not chunked:
                break
            if self._allocate_or_preempt(seq, num_new, running, waiting, pool, batch):
                batch.seqs.append(seq)
                batch.num_scheduled_tokens.append(num_new)
                budget -= num_new
                i += 1
            # else: seq itself was preempted and removed from running; index i now holds the next one
        if not batch.preempted:
            self.admit(waiting, running, pool, batch, budget)
        return batch

    def _allocate_or_preempt(self, seq, num_new, running, waiting, pool, batch) -> bool:
        return allocate_or_preempt(seq, num_new, running, waiting, pool, batch)

    def admit(self, waiting, running, pool, batch, budget) -> None:
        """Move waiting sequences to running in arrival order while the budget, max_num_seqs and the KV
        watermark allow; each one's tokens (its prefill, chunked to what is left of budget) join batch."""
        max_seqs = self.config.max_num_seqs
        watermark_blocks = int(self.config.watermark * pool.num_blocks)
        while waiting and budget > 0 and len(running) < max_seqs:
            seq = waiting[0]
            remaining = seq.num_tokens - seq.num_computed_tokens
            num_new = remaining if remaining <= budget else budget
            if num_new < remaining and not self.config.chunked_prefill:
                break
            if not admissible(seq, num_new, pool, watermark_blocks):
                break
            if not pool.allocate(seq, num_new):
                break
            waiting.popleft()
            running.append(seq)
            batch.seqs.append(seq)
            batch.num_scheduled_tokens.append(num_new)
            budget -= num_new
