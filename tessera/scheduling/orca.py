"""Orca (Yu et al., OSDI 2022): iteration-level scheduling without paged KV; each request reserves its maximum KV.

Prefills run whole, beside the decodes of the same iteration (selective batching); nothing is ever preempted.
"""
from __future__ import annotations

from dataclasses import replace

from tessera.interface import KVBlockPool, ScheduledBatch
from tessera.scheduling.common import admissible, schedule
from tessera.scheduling.config import SchedulerConfig


def reserved_tokens(seq) -> int:
    """Orca reserves max_tokens slots per request at admission (§4.2 of the paper): prompt + output - 1 KV
    tokens in the simulator, which knows each request's output length (Vidur reserves the model's maximum
    length instead, `max_blocks_per_sequence`)."""
    return seq.num_prompt_tokens + seq.max_output_tokens - 1


class OrcaScheduler:
    """Every running request is in every iteration (a decode token, or its whole prompt right after
    admission); new requests are admitted in arrival order while max_num_seqs, the iteration's token cap
    (engine.max_num_batched_tokens; the paper caps only the batch size) and a full-length KV reservation
    (with the watermark) allow.
    """

    name = "orca"

    def __init__(self, config: SchedulerConfig) -> None:
        self.config = replace(config, chunked_prefill=False, family=self.name)

    def schedule(self, waiting, running: list, pool: KVBlockPool) -> ScheduledBatch:
        batch = ScheduledBatch()
        budget = self.config.max_num_batched_tokens
        for seq in running:
            num_new = seq.num_tokens - seq.num_computed_tokens
            schedule(batch, seq, num_new)
            budget -= num_new
        watermark_blocks = int(self.config.watermark * pool.num_blocks)
        while waiting and len(running) < self.config.max_num_seqs:
            seq = waiting[0]
            num_new = seq.num_tokens - seq.num_computed_tokens
            reserve = reserved_tokens(seq) - seq.num_computed_tokens
            if num_new > budget or not admissible(seq, reserve, pool, watermark_blocks):
                break
            if not pool.allocate(seq, reserve):
                break
            waiting.popleft()
            running.append(seq)
            schedule(batch, seq, num_new)
            budget -= num_new
        return batch
