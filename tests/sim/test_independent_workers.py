"""Workers that nothing couples run one after another, each in its own SimPy environment: the same results as one
environment for all, and never when something does couple them (a state-based router, callbacks, shared GPUs)."""
import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from tessera.memory import MemoryConfig
from tessera.scheduling import SchedulerConfig
from tessera.sim import Cluster, make_router
from tessera.sim.kv_setup import KVSetup
from tessera.types import Request, WorkerSpec
from tests.sim.fakes import TINY_GPU, TINY_MODEL, LinearCost, worker_specs
from tests.sim.helpers import assert_same, recorded_run, requests_strategy


def run(reqs, independent, *, workers=3, fast_forward=True, max_seqs=6, router="round_robin", on_finish=None):
    cluster = Cluster(worker_specs(workers), lambda s: LinearCost(),
                      SchedulerConfig(max_num_seqs=max_seqs, max_num_batched_tokens=128),
                      MemoryConfig(0.5, 0.0), make_router(router), fast_forward=fast_forward,
                      independent_workers=independent)
    requests = [Request(i, t, p, o) for i, (t, p, o) in enumerate(sorted(reqs))]
    frames, result = recorded_run(cluster, requests, on_finish)
    return frames, result, cluster


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reqs=requests_strategy, workers=st.integers(2, 4), fast_forward=st.booleans(), max_seqs=st.integers(1, 8))
def test_independent_workers_give_bit_identical_records(reqs, workers, fast_forward, max_seqs):
    """Arrivals mid-span, preemptions (the 100-block pool is small), rejections, bursts of equal arrival times."""
    alone, result, cluster = run(reqs, True, workers=workers, fast_forward=fast_forward, max_seqs=max_seqs)
    together, shared, _ = run(reqs, False, workers=workers, fast_forward=fast_forward, max_seqs=max_seqs)
    assert_same(alone, together)
    assert result.end_s == shared.end_s
    assert cluster.env.now == 0  # the shared environment never ran: the workers ran in their own
    assert all(w.env is not cluster.env for w in cluster.workers)


def test_arrival_times_are_the_traces_exactly():
    """A request dispatched after a long gap used to land 1 ulp off its arrival time (now + (at - now) rounds
    when now < at / 2); the timeout is now set at the arrival time itself, so both modes agree bit for bit."""
    reqs = [(0.07107382127888637, 50, 5), (0.3589489316171132, 50, 5), (0.6106107208367102, 40, 3)]
    for independent in (True, False):
        _, result, _ = run(reqs, independent, workers=2)
        assert [s.arrival_s for s in result.seqs] == [s.request.arrival_s for s in result.seqs]


def test_coupled_clusters_share_one_environment():
    reqs = [(0.01 * i, 60, 8) for i in range(8)]
    _, _, cluster = run(reqs, True, router="least_outstanding_tokens")  # picks by worker state
    assert all(w.env is cluster.env for w in cluster.workers) and cluster.env.now > 0
    _, _, cluster = run(reqs, True, on_finish=lambda seq, c: None)  # a callback may submit to any worker
    assert all(w.env is cluster.env for w in cluster.workers)
    _, _, cluster = run(reqs, True, workers=1)
    assert cluster.workers[0].env is cluster.env
    small = dataclasses.replace(TINY_MODEL, num_params=2e5)
    specs = [WorkerSpec(i, TINY_GPU, small, gpu_ids=(0,), kv_bytes_per_gpu=256 * 16 * 40) for i in range(2)]
    shared_gpu = Cluster(specs, lambda s: LinearCost(), SchedulerConfig(), MemoryConfig(0.5, 0.0),
                         make_router("round_robin"))  # two replicas on GPU 0
    assert not shared_gpu._independent(None)
    kv = Cluster(worker_specs(2), lambda s: LinearCost(), SchedulerConfig(), MemoryConfig(0.5, 0.0),
                 make_router("round_robin"), kv=KVSetup("full"))
    assert kv._independent(None) == all(w.kv is None for w in kv.workers)


def test_a_worker_that_ran_cannot_move():
    reqs = [(0.0, 60, 8), (0.0, 60, 8)]
    _, _, cluster = run(reqs, True, workers=2)
    with pytest.raises(RuntimeError, match="already run"):
        cluster.workers[0].move_to_new_env()
