"""Simulator invariants under random workloads (hypothesis): conservation, KV bounds, time order, spans."""
import math

import numpy as np
from hypothesis import HealthCheck, given, settings, strategies as st

from tessera.memory import MemoryConfig
from tessera.scheduling import SchedulerConfig
from tessera.sim import Cluster, make_router, request_frame
from tessera.types import Request
from tests.sim.fakes import LinearCost, worker_specs
from tests.sim.helpers import requests_strategy


def build(reqs, *, workers=2, max_seqs=6, budget=128, chunked=True, fast_forward=True, router="round_robin"):
    cluster = Cluster(worker_specs(workers), lambda s: LinearCost(),
                      SchedulerConfig(max_num_seqs=max_seqs, max_num_batched_tokens=budget, chunked_prefill=chunked),
                      MemoryConfig(0.5, 0.0), make_router(router), fast_forward=fast_forward)
    requests = [Request(i, t, p, o) for i, (t, p, o) in enumerate(sorted(reqs))]
    return cluster, requests


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reqs=requests_strategy, max_seqs=st.integers(1, 8), budget=st.sampled_from([16, 64, 512]),
       router=st.sampled_from(["round_robin", "least_outstanding_tokens"]))
def test_every_request_finishes_once_with_its_tokens(reqs, max_seqs, budget, router):
    cluster, requests = build(reqs, max_seqs=max_seqs, budget=budget, router=router)
    run = cluster.run(requests)
    assert sorted(s.request_id for s in run.seqs) == list(range(len(requests)))
    for seq in run.seqs:
        if seq.status == "finished":
            assert seq.num_generated == seq.max_output_tokens
            assert seq.arrival_s <= seq.first_scheduled_s <= seq.first_token_s <= seq.finish_s
        else:  # only requests that can never fit are refused, and they say why
            assert seq.status.startswith("rejected")
            assert seq.num_prompt_tokens + seq.max_output_tokens - 1 > 16 * 99
    for worker in run.workers:
        assert max(worker.kv_usage_blocks, default=0) <= worker.pool.num_blocks
        assert worker.pool.num_free_blocks == worker.pool.num_blocks  # every block returned
        assert all(a <= b for a, b in zip(worker.kv_usage_t, worker.kv_usage_t[1:]))  # time never goes back
        assert not worker.running and not worker.waiting


@settings(max_examples=40, deadline=None)
@given(reqs=requests_strategy, max_seqs=st.integers(1, 8), chunked=st.booleans())
def test_decode_spans_match_one_event_per_iteration(reqs, max_seqs, chunked):
    budget = 512 if not chunked else 64
    fast, requests = build(reqs, max_seqs=max_seqs, budget=budget, chunked=chunked, fast_forward=True)
    slow, _ = build(reqs, max_seqs=max_seqs, budget=budget, chunked=chunked, fast_forward=False)
    a, b = request_frame(fast.run(requests)), request_frame(slow.run(requests))
    for col in ("start_s", "first_token_s", "finish_s"):
        np.testing.assert_allclose(a[col].to_numpy(float), b[col].to_numpy(float), rtol=1e-9, atol=1e-12)
    assert (a["preemptions"] == b["preemptions"]).all()
    assert [w.num_iterations for w in fast.workers] == [w.num_iterations for w in slow.workers]


def test_memory_pressure_preempts_and_still_finishes():
    # 100 blocks of 16 tokens; 6 requests of 200 + 150 tokens cannot all stay resident.
    cluster, requests = build([(0.0, 200, 150)] * 6, workers=1, max_seqs=6, budget=2048)
    run = cluster.run(requests)
    assert sum(s.num_preemptions for s in run.seqs) > 0
    assert all(s.status == "finished" and s.num_generated == 150 for s in run.seqs)


def test_request_larger_than_the_pool_is_rejected_with_reason():
    cluster, requests = build([(0.0, 5000, 10), (0.0, 10, 10)], workers=1)
    run = cluster.run(requests)
    by_prompt = {s.num_prompt_tokens: s for s in run.seqs}
    assert by_prompt[5000].status.startswith("rejected: needs 314 KV blocks (5009 tokens)")  # ceil(5009 / 16)
    assert math.isnan(by_prompt[5000].finish_s)
    assert by_prompt[10].status == "finished"


def test_same_inputs_same_results():
    reqs = [(0.01 * i, 30 + 7 * i, 5 + i) for i in range(30)]
    frames = [request_frame(build(reqs)[0].run(build(reqs)[1])) for _ in range(2)]
    assert frames[0].equals(frames[1])
