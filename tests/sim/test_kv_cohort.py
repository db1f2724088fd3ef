"""The KV decode cohort (sim/kv_cohort.py) gives exactly the results of stepping every request through the
scheduler and RequestKV.on_decode_step: requests, iterations, KV usage, PCIe copies, stalls and page counters, in
every rerank mode (sampled mode's ranks drawn ahead over the batch, members included, consume the same stream)."""
import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from tessera.cost import make_cost_model
from tessera.hardware import gpu, host_link
from tessera.memory import MemoryConfig
from tessera.models import model
from tessera.scheduling import SchedulerConfig
from tessera.sim import Cluster, make_router
from tessera.sim.kv_setup import KVSetup, KVSimConfig
from tessera.types import LinkSpec, Request, WorkerSpec
from tests.sim.fakes import PCIE, TINY_GPU, TINY_MODEL, LinearCost, worker_specs
from tests.sim.helpers import assert_same, recorded_run

TINY_PARAMS = {"flexicache": {"topk_pages": 4, "rerank_interval": 4}, "flexicache_adaptive": {"topk_pages": 4},
               "quest": {"topk_pages": 4}}  # policies with OFFLOAD heads (they rank), and one without


SLOW_PCIE = LinkSpec(name="slow-pcie", bandwidth_Bps=3e6, latency_s=1e-4)  # copies span several iterations


def tiny_run(reqs, cohort, *, policy, mode, max_seqs, budget, chunked, max_log=None, memory=0.5, workers=1,
             router="round_robin", on_finish=None, interval=None, link=PCIE):
    params = dict(TINY_PARAMS[policy], **({"rerank_interval": interval} if interval else {}))
    kv = KVSetup(policy, params, KVSimConfig(rerank_mode=mode))
    cluster = Cluster(worker_specs(workers), lambda s: LinearCost(),
                      SchedulerConfig(max_num_seqs=max_seqs, max_num_batched_tokens=budget, chunked_prefill=chunked),
                      MemoryConfig(memory, 0.0), make_router(router), host_link=link, kv=kv,
                      decode_cohort=cohort)
    for worker in cluster.workers:
        if max_log is not None and worker._kv_cohort is not None:
            worker._kv_cohort.max_log = max_log
    requests = [Request(i, t, p, o) for i, (t, p, o) in enumerate(sorted(reqs))]
    frames, run = recorded_run(cluster, requests, on_finish)
    return frames, (run.workers[0] if workers == 1 else run.workers)


def kv_results(worker):
    link = worker.kv.link
    return (worker.kv.request_stats(), worker.kv.run_stats(), worker.num_preemptions, worker.kv_usage_blocks,
            (link.log.t_s, link.log.duration_s, link.log.direction, link.log.num_bytes) if link is not None else None)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reqs=st.lists(st.tuples(st.floats(0, 0.3), st.integers(1, 700), st.integers(1, 90)), min_size=1, max_size=20),
       max_seqs=st.integers(1, 6), budget=st.sampled_from([16, 64, 512]), chunked=st.booleans(),
       policy=st.sampled_from(["flexicache", "flexicache_adaptive"]),
       mode=st.sampled_from(["pages", "sampled", "moments"]),
       max_log=st.sampled_from([None, 1, 3]), interval=st.sampled_from([None, 16, 32]),
       link=st.sampled_from([PCIE, SLOW_PCIE]))
def test_cohort_is_bit_identical_on_small_workloads(reqs, max_seqs, budget, chunked, policy, mode, max_log, interval,
                                                     link):
    """Prefill chunks beside quiet decodes, reload stalls and resumes (with a slow link, mid-iteration; pending page
    returns while copies are in flight), preemptions (the pool is small: the cohort hands those steps to the
    scheduler), finishes inside a quiet stretch, stretches of a whole page (rank intervals past 16 steps) and the
    folded duration log."""
    budget = budget if chunked else 512
    interval = interval if policy == "flexicache" else None  # the adaptive policy sets its own intervals
    kw = dict(policy=policy, mode=mode, max_seqs=max_seqs, budget=budget, chunked=chunked, interval=interval,
              link=link)
    lazy, worker = tiny_run(reqs, True, max_log=max_log, **kw)
    plain, reference = tiny_run(reqs, False, **kw)
    assert worker._kv_cohort is not None and reference._kv_cohort is None
    assert_same(lazy, plain)
    assert kv_results(worker) == kv_results(reference)


@pytest.mark.parametrize("mode", ["pages", "sampled", "moments"])
def test_cohort_is_bit_identical_when_the_pool_preempts(mode):
    rng = np.random.default_rng(0)
    reqs = [(float(rng.uniform(0, 0.1)), int(rng.integers(500, 1000)), int(rng.integers(40, 120))) for _ in range(16)]
    kw = dict(policy="flexicache", mode=mode, max_seqs=6, budget=64, chunked=True)
    lazy, worker = tiny_run(reqs, True, **kw)
    plain, reference = tiny_run(reqs, False, **kw)
    assert_same(lazy, plain)
    assert kv_results(worker) == kv_results(reference)
    assert reference.num_preemptions > 20
    # the steps that preempt go through the scheduler; the cohort takes the rest
    assert 0.8 * worker.num_iterations < worker._kv_cohort.steps < worker.num_iterations


@pytest.mark.parametrize("mode", ["sampled", "moments"])
def test_cohort_is_bit_identical_across_workers_with_a_load_router_and_follow_ups(mode):
    rng = np.random.default_rng(3)
    reqs = [(float(rng.uniform(0, 0.2)), int(rng.integers(100, 700)), int(rng.integers(20, 100))) for _ in range(20)]

    def follow_up(seq, cluster):  # a callback submitting work mid-run, as MoA's aggregator does
        if seq.request_id < 6:
            cluster.submit(Request(100 + seq.request_id, cluster.env.now, 300, 40))

    kw = dict(policy="flexicache", mode=mode, max_seqs=4, budget=64, chunked=True, workers=2,
              router="least_outstanding_tokens", on_finish=follow_up)
    lazy, workers = tiny_run(reqs, True, **kw)
    plain, reference = tiny_run(reqs, False, **kw)
    assert_same(lazy, plain)
    assert len(lazy[0]) == 26
    for a, b in zip(workers, reference):
        assert kv_results(a) == kv_results(b)
    assert all(w._kv_cohort.steps > 0.5 * w.num_iterations for w in workers)


LLAMA = model("Llama-3.1-8B")
H100 = gpu("H100-NVL-94GB")


def llama_run(cohort: bool, mode: str, num_requests: int = 24, max_seqs: int = 16):
    rng = np.random.default_rng(7)
    requests = [Request(i, float(t), int(p), int(o)) for i, (t, p, o) in
                enumerate(zip(np.sort(rng.uniform(0, 2, num_requests)), rng.integers(3000, 9000, num_requests),
                              rng.integers(40, 260, num_requests)))]
    spec = WorkerSpec(worker_id=0, gpu=H100, model=LLAMA, tp=1)
    cost = make_cost_model("roofline", LLAMA, H100, 1)
    cluster = Cluster([spec], lambda s: cost, SchedulerConfig(max_num_seqs=max_seqs, max_num_batched_tokens=8192),
                      MemoryConfig(), make_router("round_robin"), host_link=host_link(H100),
                      kv=KVSetup("flexicache", {}, KVSimConfig(rerank_mode=mode)), decode_cohort=cohort)
    frames, run = recorded_run(cluster, requests)
    return frames, run.workers[0]


@pytest.mark.parametrize("mode", ["pages", "sampled", "moments"])
def test_cohort_is_bit_identical_on_a_flexicache_run_and_takes_its_steps(mode):
    lazy, worker = llama_run(True, mode)
    plain, reference = llama_run(False, mode)
    assert_same(lazy, plain)
    assert kv_results(worker) == kv_results(reference)
    assert reference.kv.num_reloads > 50
    # arrivals over 2 s, chunked 3k-9k-token prefills beside the decodes: the cohort still takes every step
    assert worker._kv_cohort.steps == worker.num_iterations


def test_no_cohort_for_a_policy_that_never_ranks():
    # no OFFLOAD head: no rank, so no step is quiet
    cluster = Cluster(worker_specs(1), lambda s: LinearCost(), SchedulerConfig(), MemoryConfig(0.5, 0.0),
                      make_router("round_robin"), host_link=PCIE, kv=KVSetup("quest", TINY_PARAMS["quest"]))
    assert cluster.workers[0]._kv_cohort is None


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reqs=st.lists(st.tuples(st.floats(0, 0.3), st.integers(1, 700), st.integers(1, 90)), min_size=1, max_size=16),
       max_seqs=st.integers(1, 6), mode=st.sampled_from(["pages", "sampled", "moments"]), cohort=st.booleans(),
       link=st.sampled_from([PCIE, SLOW_PCIE]))
def test_reloads_taken_at_the_workers_steps_equal_one_event_each(reqs, max_seqs, mode, cohort, link):
    """Reload landings taken late, at the worker's next step or by an idle worker's one event (sim/kv_reloads.py),
    give the run that one landing event per reload gives: requests, KV usage, copies, stalls and page returns."""
    from tessera.sim.kv_reloads import KVReloads

    kw = dict(policy="flexicache", mode=mode, max_seqs=max_seqs, budget=64, chunked=True, link=link)
    quiet, worker = tiny_run(reqs, cohort, **kw)
    KVReloads.quiet_reloads = False
    try:
        evented, reference = tiny_run(reqs, cohort, **kw)
    finally:
        KVReloads.quiet_reloads = True
    assert_same(quiet, evented)
    assert kv_results(worker) == kv_results(reference)


def shared_gpu_run(reqs, cohort, mode, link):
    """Two FlexiCache replicas on one GPU (co-resident, as MoA places experts): each waits for the GPU's compute
    lane before its step."""
    big = dataclasses.replace(TINY_GPU, hbm_bytes=1e7)
    specs = [WorkerSpec(worker_id=i, gpu=big, model=TINY_MODEL, tp=1, gpu_ids=(0,), kv_bytes_per_gpu=256 * 16 * 45)
             for i in range(2)]
    kv = KVSetup("flexicache", TINY_PARAMS["flexicache"], KVSimConfig(rerank_mode=mode))
    cluster = Cluster(specs, lambda s: LinearCost(),
                      SchedulerConfig(max_num_seqs=4, max_num_batched_tokens=64, chunked_prefill=True),
                      MemoryConfig(0.9, 0.0), make_router("round_robin"), host_link=link, kv=kv, decode_cohort=cohort)
    frames, run = recorded_run(cluster, [Request(i, t, p, o) for i, (t, p, o) in enumerate(sorted(reqs))])
    return frames, run.workers


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reqs=st.lists(st.tuples(st.floats(0, 0.3), st.integers(1, 700), st.integers(1, 90)), min_size=2, max_size=12),
       mode=st.sampled_from(["pages", "moments"]), cohort=st.booleans(), link=st.sampled_from([PCIE, SLOW_PCIE]))
def test_reloads_land_the_same_for_replicas_sharing_a_gpu(reqs, mode, cohort, link):
    """A replica that waits for its shared GPU takes the reloads that landed meanwhile before it schedules, as one
    event per reload would have run them (it used to schedule without them, or fail to idle)."""
    from tessera.sim.kv_reloads import KVReloads

    quiet, workers = shared_gpu_run(reqs, cohort, mode, link)
    KVReloads.quiet_reloads = False
    try:
        evented, reference = shared_gpu_run(reqs, cohort, mode, link)
    finally:
        KVReloads.quiet_reloads = True
    assert_same(quiet, evented)
    for a, b in zip(workers, reference):
        assert kv_results(a) == kv_results(b)
