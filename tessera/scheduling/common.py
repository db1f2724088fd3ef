"""Steps the scheduler families share: allocate a running sequence's tokens or preempt the newest, admit one waiting.

Recompute preemption as in vLLM: the victim's KV is freed and it goes back to the head of the waiting queue.
"""
from __future__ import annotations

from tessera.interface import KVBlockPool, ScheduledBatch


def is_decode(seq) -> bool:
    """A sequence whose prompt is computed and that needs exactly one token (its last sampled one); a prompt with
    one token left is still a prefill (as the simulator's batch records count it)."""
    return seq.num_computed_tokens >= seq.num_prompt_tokens and seq.num_tokens - seq.num_computed_tokens == 1


def allocate_or_preempt(seq, num_new: int, running: list, waiting, pool: KVBlockPool, batch: ScheduledBatch) -> bool:
    """KV for seq's next num_new tokens, preempting the most recently admitted running sequences as needed.

    Returns False when seq itself was the victim (it is then out of `running`)."""
    while not pool.allocate(seq, num_new):
        victim = running.pop()
        pool.free(victim)
        victim.preempt()
        waiting.appendleft(victim)
        batch.preempted.append(victim)
        if victim is seq:
            return False
    return True


def admissible(seq, num_new: int, pool: KVBlockPool, watermark_blocks: int) -> bool:
    """vLLM's admission check: after this prefill at least watermark_blocks blocks stay free."""
    return pool.num_free_blocks - pool.blocks_needed(seq, num_new) >= watermark_blocks


def schedule(batch: ScheduledBatch, seq, num_new: int) -> None:
    batch.seqs.append(seq)
    batch.num_scheduled_tokens.append(num_new)
