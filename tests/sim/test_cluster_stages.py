"""Cluster features multi-stage pipelines need: explicit assignment, submissions from callbacks,
co-resident replicas sharing a GPU, and replicas that become ready after a load time."""
from dataclasses import replace

import pytest

from tessera.memory import MemoryConfig
from tessera.scheduling import SchedulerConfig
from tessera.sim import Cluster, make_router
from tessera.types import Request, WorkerSpec
from tests.sim.fakes import TINY_GPU, TINY_MODEL, LinearCost

COST = LinearCost(base=1e-3, per_token=1e-5, per_kv=0.0)
MEM = MemoryConfig(0.5, 0.0)


def cluster(specs):
    return Cluster(specs, lambda s: COST, SchedulerConfig(watermark=0.0), MEM, make_router("round_robin"))


def test_explicit_assignment_bypasses_the_router():
    specs = [WorkerSpec(i, TINY_GPU, TINY_MODEL) for i in range(3)]
    run = cluster(specs).run([Request(i, 0.0, 10, 2) for i in range(4)], assignment={i: 2 for i in range(4)})
    assert {s.worker_id for s in run.seqs} == {2}


def test_callback_submissions_run_after_their_trigger_and_are_waited_for():
    specs = [WorkerSpec(0, TINY_GPU, TINY_MODEL)]

    def on_finish(seq, c):
        if seq.request.stage == "expert":
            c.submit(Request(100 + seq.request_id, 0.0, 20, 3, stage="aggregator"), worker_id=0)

    run = cluster(specs).run([Request(i, 0.0, 10, 2, stage="expert") for i in range(2)], on_finish=on_finish)
    by_id = {s.request_id: s for s in run.seqs}
    assert len(run.seqs) == 4 and all(s.status == "finished" for s in run.seqs)
    for i in range(2):
        assert by_id[100 + i].arrival_s == pytest.approx(by_id[i].finish_s)
    assert run.end_s == max(s.finish_s for s in run.seqs)


def test_co_resident_replicas_take_turns_on_the_gpu():
    # Two small replicas (0.4 MB of weights each) with explicit 40-block KV reservations share GPU 0.
    small = replace(TINY_MODEL, num_params=2e5)
    c = cluster([WorkerSpec(i, TINY_GPU, small, gpu_ids=(0,), kv_bytes_per_gpu=256 * 16 * 40) for i in range(2)])
    assert [w.pool.num_blocks for w in c.workers] == [40, 40]
    run = c.run([Request(0, 0.0, 100, 1), Request(1, 0.0, 100, 1)], assignment={0: 0, 1: 1})
    one = 1e-3 + 100e-5
    assert sorted(s.finish_s for s in run.seqs) == pytest.approx([one, 2 * one])  # serialised, not parallel


def test_co_resident_replicas_that_do_not_fit_name_the_gpu_and_the_fix():
    specs = [WorkerSpec(i, TINY_GPU, TINY_MODEL, gpu_ids=(0,), kv_bytes_per_gpu=256 * 16 * 40) for i in range(2)]
    with pytest.raises(MemoryError, match=r"GPU 0 .*weights needs.*fewer co-resident replicas"):
        cluster(specs)


def test_a_replica_serves_only_after_its_load_time():
    run = cluster([WorkerSpec(0, TINY_GPU, TINY_MODEL, ready_s=5.0)]).run([Request(0, 1.0, 10, 1)])
    assert run.seqs[0].first_scheduled_s == pytest.approx(5.0)
