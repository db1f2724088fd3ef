"""Hand-computed iteration timing of a single worker with the linear cost model."""
import pytest

from tessera.memory import MemoryConfig
from tessera.scheduling import SchedulerConfig
from tessera.sim import Cluster, make_router
from tessera.sim.kv_setup import KVSetup
from tessera.types import Request
from tests.sim.fakes import PCIE, LinearCost, worker_specs


def run_one(requests, **sched):
    cost = LinearCost(base=1e-3, per_token=1e-5, per_kv=1e-7)
    cluster = Cluster(worker_specs(1), lambda s: cost, SchedulerConfig(**sched), MemoryConfig(0.5, 0.0),
                      make_router("round_robin"))
    return {s.request_id: s for s in cluster.run(requests).seqs}


def test_single_request_prefill_then_decodes():
    # prefill 100 tokens: 1e-3 + 100e-5 = 2e-3 -> first token at 2 ms.
    # decode i (i = 1..3) reads 100 + i tokens: 1e-3 + 1e-5 + (100 + i) * 1e-7.
    seqs = run_one([Request(0, 0.0, 100, 4)])
    seq = seqs[0]
    assert seq.first_token_s == pytest.approx(2e-3)
    decodes = sum(1e-3 + 1e-5 + (100 + i) * 1e-7 for i in (1, 2, 3))
    assert seq.finish_s == pytest.approx(2e-3 + decodes)


def test_chunked_prefill_splits_a_long_prompt_by_the_token_budget():
    seq = run_one([Request(0, 0.0, 100, 1)], max_num_seqs=8, max_num_batched_tokens=40)[0]
    # three chunks of 40, 40, 20 tokens; the token comes after the last chunk.
    assert seq.first_token_s == pytest.approx(3e-3 + 100e-5)
    assert seq.finish_s == seq.first_token_s


def test_arrival_mid_decode_joins_at_the_next_iteration_boundary():
    # request 0 decodes alone; request 1 arrives inside an iteration and is first scheduled at its end.
    seqs = run_one([Request(0, 0.0, 16, 50), Request(1, 0.0105, 16, 2)])
    start = seqs[1].first_scheduled_s
    assert start >= 0.0105
    boundaries_before = seqs[0].first_token_s
    assert start > boundaries_before
    assert seqs[1].finish_s < seqs[0].finish_s


@pytest.mark.parametrize("kvpolicy", [False, True])
def test_batch_shapes_count_the_prompts_of_a_prefill_step(kvpolicy):
    """Per-sequence costs (engine_profile.cpu_per_seq_s) see every prompt of a step: three prompts at once are three
    prefill sequences, then three decodes; with and without a KV policy (sim/kv_manager.py builds those shapes)."""
    shapes = []

    class Recording(LinearCost):
        def iteration_time(self, batch):
            shapes.append((batch.prefill_tokens, batch.prefill_seqs, batch.decode_seqs, batch.num_seqs))
            return super().iteration_time(batch)

    cost = Recording()
    requests = [Request(i, 0.0, 20 + i, 3) for i in range(3)]
    kv = KVSetup("flexicache", {"topk_pages": 4, "rerank_interval": 4}) if kvpolicy else None
    Cluster(worker_specs(1), lambda s: cost, SchedulerConfig(), MemoryConfig(0.5, 0.0), make_router("round_robin"),
            host_link=PCIE, kv=kv).run(requests)
    assert shapes[0] == (63, 3, 0, 3)
    assert shapes[1][1:] == (0, 3, 3)


def test_a_scheduler_that_schedules_nothing_is_reported_not_crashed_on():
    # nothing preempted, nothing scheduled, a request waiting: the worker says so (it used to reach a variable set
    # only when the scheduler preempted)
    from tessera.interface import ScheduledBatch

    cluster = Cluster(worker_specs(1), lambda s: LinearCost(), SchedulerConfig(), MemoryConfig(0.5, 0.0),
                      make_router("round_robin"), host_link=PCIE, decode_cohort=False)
    cluster.workers[0].scheduler.schedule = lambda waiting, running, pool: ScheduledBatch()
    with pytest.raises(RuntimeError, match="simulation stalled with 1 unfinished") as stalled:
        cluster.run([Request(0, 0.0, 32, 4)])
    assert "scheduler produced an empty batch with 1 waiting" in str(stalled.value.__cause__)
