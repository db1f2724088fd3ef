"""FCFS scheduler decisions on hand-made queues, with exact token counts and preemption order."""
from collections import deque

import pytest

from tessera.scheduling import FCFSScheduler, SchedulerConfig
from tessera.sim.block_pool import BlockPool
from tessera.sim.sequence import SeqState
from tessera.types import Request


def seq(i, prompt, output=10):
    return SeqState(Request(i, 0.0, prompt, output))


def test_admits_in_arrival_order_within_the_token_budget_and_chunks_the_last():
    sched = FCFSScheduler(SchedulerConfig(max_num_seqs=64, max_num_batched_tokens=100, watermark=0.0))
    pool = BlockPool(100, 16)
    waiting, running = deque([seq(0, 40), seq(1, 50), seq(2, 30)]), []
    batch = sched.schedule(waiting, running, pool)
    assert [s.request_id for s in batch.seqs] == [0, 1, 2]
    assert batch.num_scheduled_tokens == [40, 50, 10]  # request 2 gets a 10-token chunk
    assert [s.request_id for s in running] == [0, 1, 2] and not waiting


def test_without_chunked_prefill_a_prompt_that_does_not_fit_waits():
    sched = FCFSScheduler(SchedulerConfig(max_num_seqs=64, max_num_batched_tokens=100, chunked_prefill=False,
                                          watermark=0.0))
    waiting, running = deque([seq(0, 60), seq(1, 60)]), []
    batch = sched.schedule(waiting, running, BlockPool(100, 16))
    assert batch.num_scheduled_tokens == [60]
    assert [s.request_id for s in waiting] == [1]


def test_max_num_seqs_caps_admission():
    sched = FCFSScheduler(SchedulerConfig(max_num_seqs=2, watermark=0.0))
    waiting, running = deque([seq(i, 10) for i in range(4)]), []
    sched.schedule(waiting, running, BlockPool(100, 16))
    assert len(running) == 2 and len(waiting) == 2


def test_running_requests_come_first_and_the_newest_is_preempted_when_blocks_run_out():
    sched = FCFSScheduler(SchedulerConfig(watermark=0.0))
    pool = BlockPool(4, 16)
    a, b = seq(0, 32), seq(1, 32)
    waiting, running = deque([a, b]), []
    first = sched.schedule(waiting, running, pool)
    assert first.num_scheduled_tokens == [32, 32] and pool.num_free_blocks == 0
    for s in (a, b):  # both finished prefill and sampled a token: each now needs a third block
        s.num_computed_tokens = 32
        s.num_generated = 1
        s.num_tokens = 33
    second = sched.schedule(waiting, running, pool)
    assert second.preempted == [b]  # the most recently admitted loses its KV
    assert [s.request_id for s in second.seqs] == [0] and second.num_scheduled_tokens == [1]
    assert list(waiting) == [b] and b.num_computed_tokens == 0 and b.num_preemptions == 1
    assert pool.num_free_blocks == 1  # b's two blocks back, one taken by a


def test_watermark_keeps_blocks_free_for_running_requests():
    sched = FCFSScheduler(SchedulerConfig(watermark=0.1))
    pool = BlockPool(10, 16)
    waiting, running = deque([seq(0, 16 * 9 + 1)]), []
    batch = sched.schedule(waiting, running, pool)
    assert not batch.seqs and len(waiting) == 1  # needs all 10 blocks, leaving less than the 1-block watermark


@pytest.mark.parametrize("field,value", [("block_size", 0), ("max_num_seqs", 0), ("watermark", 1.5)])
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=f"scheduler.{field}"):
        SchedulerConfig(**{field: value})
