"""The decode cohort's lazy counters give exactly the results of stepping every request through the scheduler."""
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from tessera.memory import MemoryConfig
from tessera.scheduling import SchedulerConfig
from tessera.sim import Cluster, make_router
from tessera.sim.block_pool import BlockPool
from tessera.sim.decode_cohort import DecodeCohort
from tessera.sim.sequence import SeqState
from tessera.types import Request
from tests.sim.fakes import ContextCost, LinearCost, worker_specs
from tests.sim.helpers import assert_same, recorded_run, requests_strategy


def frames(reqs, decode_cohort, *, workers=2, max_seqs=6, budget=128, chunked=True, router="round_robin",
           on_finish=None, max_log=None, span_chunk=None, cost=LinearCost, fast_forward=True):
    cluster = Cluster(worker_specs(workers), lambda s: cost(),
                      SchedulerConfig(max_num_seqs=max_seqs, max_num_batched_tokens=budget, chunked_prefill=chunked),
                      MemoryConfig(0.5, 0.0), make_router(router), decode_cohort=decode_cohort,
                      fast_forward=fast_forward)
    for worker in cluster.workers:
        if max_log is not None and worker._cohort is not None:
            worker._cohort.max_log = max_log
        if span_chunk is not None:
            worker.span_chunk = span_chunk
    requests = [Request(i, t, p, o) for i, (t, p, o) in enumerate(sorted(reqs))]
    return recorded_run(cluster, requests, on_finish)[0], cluster


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reqs=requests_strategy, max_seqs=st.integers(1, 8), budget=st.sampled_from([16, 64, 512]),
       chunked=st.booleans(), router=st.sampled_from(["round_robin", "least_outstanding_tokens"]),
       max_log=st.sampled_from([None, 1, 5]), span_chunk=st.sampled_from([None, 1, 3]))
@example(reqs=[(1e-05, 296, 17)], max_seqs=1, budget=16, chunked=False, router="round_robin", max_log=None,
         span_chunk=None)  # start + (end - start) is 1 ulp off the summed end time here
def test_cohort_gives_bit_identical_records(reqs, max_seqs, budget, chunked, router, max_log, span_chunk):
    """Prefills, chunks, arrivals mid-span (spans timed a few iterations ahead at a time), preemptions (the
    100-block pool is small) and rejections."""
    budget = budget if chunked else 512
    lazy, cluster = frames(reqs, True, max_seqs=max_seqs, budget=budget, chunked=chunked, router=router,
                           max_log=max_log, span_chunk=span_chunk)
    plain, _ = frames(reqs, False, max_seqs=max_seqs, budget=budget, chunked=chunked, router=router)
    assert_same(lazy, plain)
    assert all(w._cohort is not None for w in cluster.workers)  # the cohort stayed on (no fallback)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reqs=requests_strategy, max_seqs=st.integers(1, 8), chunked=st.booleans(), max_log=st.sampled_from([None, 1]),
       span_chunk=st.sampled_from([None, 1, 3]))
def test_the_longest_context_of_cohorts_and_spans_is_the_batchs(reqs, max_seqs, chunked, max_log, span_chunk):
    """A cost model that reads the longest decoding context (ContextCost): the cohort's lazy max-heap, the decode
    spans and the scheduler's own batches give every step the same context, so the records are bit-identical; the
    spans' end times are those of one event per iteration (where _batch_shape reads each decoding request)."""
    budget = 64 if chunked else 512
    lazy, cluster = frames(reqs, True, max_seqs=max_seqs, budget=budget, chunked=chunked, max_log=max_log,
                           span_chunk=span_chunk, cost=ContextCost)
    plain, _ = frames(reqs, False, max_seqs=max_seqs, budget=budget, chunked=chunked, cost=ContextCost)
    assert_same(lazy, plain)
    assert all(w._cohort is not None and w._cohort.track_longest for w in cluster.workers)
    stepped, _ = frames(reqs, False, max_seqs=max_seqs, budget=budget, chunked=chunked, cost=ContextCost,
                        fast_forward=False)
    for col in ("first_token_s", "finish_s"):
        pd.testing.assert_series_equal(plain[0][col], stepped[0][col], check_exact=True)


def test_a_cost_model_that_ignores_the_context_leaves_the_cohort_untracked():
    _, cluster = frames([(0.0, 30, 5)], True, cost=LinearCost)
    assert not cluster.workers[0]._cohort.track_longest


def test_the_longest_context_follows_members_that_join_and_leave():
    pool = BlockPool(100, 4)
    cohort = DecodeCohort(pool, track_longest=True)
    a, b, c = member(40, 10, output=3), member(10, 3), member(25, 7)
    for seq in (a, b, c):
        assert cohort.join(seq)
    assert cohort.longest_context() == 41
    cohort.steps += 1
    assert cohort.longest_context() == 42
    cohort.steps += 1  # a samples its last token
    assert cohort.pop_finished() == [a]
    assert cohort.longest_context() == 25 + 2 + 1  # c, two steps on
    cohort.write_back_all([b, c])
    assert cohort.longest_context() == 0


def test_the_longest_context_of_a_batch_is_its_longest_decoding_sequence_plus_the_new_token():
    """Worker._batch_shape: two decoding requests one token apart (computed 10 and 11): the longest reads 12 tokens."""
    from tessera.interface import ScheduledBatch
    _, cluster = frames([(0.0, 30, 5)], False, cost=ContextCost)
    worker = cluster.workers[0]
    a, b = member(10, 1), member(11, 1)
    batch = ScheduledBatch(seqs=[a, b], num_scheduled_tokens=[1, 1])
    assert worker._batch_shape(batch).decode_max_context == 12
    batch = ScheduledBatch(seqs=[b, a], num_scheduled_tokens=[1, 1])
    assert worker._batch_shape(batch, longest=11).decode_max_context == 12  # a cohort member of computed 10 beside them
    assert worker._batch_shape(batch, longest=15).decode_max_context == 15


def test_the_cohorts_heap_matches_the_brute_force_maximum_and_stays_bounded():
    """Hundreds of joins and finishes on a small cohort: the heap is compacted (stale entries dropped) and
    longest_context is always the members' largest computed count + 1."""
    import random
    rng = random.Random(5)
    cohort = DecodeCohort(BlockPool(100_000, 16), track_longest=True)
    members, compactions = [], 0
    for step in range(600):
        while len(members) < 4 or rng.random() < 0.3:
            computed = rng.randrange(1, 5000)
            seq = member(computed, -(-computed // 16), output=rng.randrange(2, 40))
            entries = len(cohort._longest)
            assert cohort.join(seq)
            members.append(seq)
            compactions += len(cohort._longest) <= entries  # the push came with a compaction
            assert len(cohort._longest) <= 2 * cohort.size + 65  # a join compacts it once it is mostly stale
        cohort.steps += 1
        for seq in cohort.pop_finished():
            members.remove(seq)
        longest = max((s.num_computed_tokens + cohort.steps - s.cohort_base for s in members), default=-1) + 1
        assert cohort.longest_context() == longest
    assert compactions > 0


def test_cohort_matches_with_preemptions_and_submissions_from_callbacks():
    reqs = [(0.001 * i, 150 + 13 * i, 60 + 7 * (i % 5)) for i in range(24)]

    def follow_up(seq, cluster):
        if seq.request_id < 8:
            cluster.submit(Request(100 + seq.request_id, cluster.env.now, 40, 30))

    lazy, _ = frames(reqs, True, max_seqs=8, budget=256, on_finish=follow_up)
    plain, cluster = frames(reqs, False, max_seqs=8, budget=256, on_finish=follow_up)
    assert sum(w.num_preemptions for w in cluster.workers) > 0
    assert len(lazy[0]) == 32
    assert_same(lazy, plain)


def member(computed, blocks, generated=1, output=50):
    seq = SeqState(Request(0, 0.0, computed, output))
    seq.num_computed_tokens, seq.num_tokens = computed, computed + 1
    seq.num_generated, seq.num_blocks = generated, blocks
    return seq


@settings(max_examples=200, deadline=None)
@given(computed=st.lists(st.integers(1, 200), min_size=1, max_size=12), ahead=st.integers(0, 40),
       first=st.integers(0, 40), length=st.integers(0, 70), block=st.sampled_from([1, 4, 16]))
def test_block_needs_from_residues_match_counting_one_by_one(computed, ahead, first, length, block):
    cohort = DecodeCohort(BlockPool(10_000, block))
    seqs = [member(c, -(-c // block), output=1_000) for c in computed]
    for s in seqs[: len(seqs) // 2]:
        assert cohort.join(s)
    cohort.steps += ahead  # members joined earlier and already took `ahead` steps
    for s in seqs[len(seqs) // 2:]:
        assert cohort.join(s)
    now = [c + (ahead if i < len(seqs) // 2 else 0) for i, c in enumerate(computed)]
    want = sum(-(-(c + first + length) // block) - -(-(c + first) // block) for c in now)
    assert cohort.blocks(first, first + length) == want
    assert cohort.computed_sum == sum(now)


def test_a_member_written_back_has_the_counters_of_one_step_at_a_time():
    cohort = DecodeCohort(BlockPool(100, 16))
    seq = member(31, 2, generated=3, output=10)
    seq.execution_s = 0.1
    assert cohort.join(seq)
    for d in (0.3, 0.7, 0.11):
        cohort.log.append(d)
    cohort.steps += 7  # the last step samples the 10th token
    assert cohort.pop_finished() == [seq]
    assert (seq.num_computed_tokens, seq.num_generated, seq.num_tokens, seq.num_blocks) == (38, 10, 38, 3)
    assert seq.execution_s == ((0.1 + 0.3) + 0.7) + 0.11
    assert seq.cohort_base == -1 and cohort.size == 0 and not cohort.log


def test_a_request_holding_extra_blocks_is_not_taken():
    cohort = DecodeCohort(BlockPool(100, 16))
    assert not cohort.join(member(31, 3))
    assert cohort.size == 0


def test_the_scheduler_keeps_the_cohort_only_for_vllm_v1_fcfs_with_full_kv():
    for family, expected in (("vllm_v1", True), ("vllm_v0", False), ("sarathi", False), ("orca", False)):
        cluster = Cluster(worker_specs(1), lambda s: LinearCost(), SchedulerConfig(family=family),
                          MemoryConfig(0.5, 0.0), make_router("round_robin"))
        assert (cluster.workers[0]._cohort is not None) is expected
    cluster = Cluster(worker_specs(1), lambda s: LinearCost(), SchedulerConfig(), MemoryConfig(0.5, 0.0),
                      make_router("round_robin"), fast_forward=False)
    assert cluster.workers[0]._cohort is None


@pytest.mark.parametrize("chunked", [True, False])
def test_cohort_matches_on_long_decodes_with_block_shortage(chunked):
    """Long outputs on one worker: spans end at block shortages; the log is folded whenever it holds 3 entries."""
    reqs = [(0.0005 * i, 20 + 3 * i, 300 + 11 * i) for i in range(6)]
    lazy, _ = frames(reqs, True, workers=1, max_seqs=6, budget=512, chunked=chunked, max_log=2)
    plain, cluster = frames(reqs, False, workers=1, max_seqs=6, budget=512, chunked=chunked)
    assert_same(lazy, plain)


def test_span_times_extend_as_one_sum_and_cover_the_iteration_in_progress():
    from tessera.interface import BatchShape
    from tessera.sim.span_times import SpanTimes

    cost = LinearCost()
    whole = SpanTimes(cost.iteration_time, BatchShape(decode_seqs=3), 0.25, 3, 30, 10)
    whole.extend(100)
    parts = SpanTimes(cost.iteration_time, BatchShape(decode_seqs=3), 0.25, 3, 30, 10)
    parts.extend(2)
    parts.cover(whole.ends[5] - 1e-9)
    assert len(parts.ends) == 6 and not parts.complete
    parts.extend(3)
    parts.extend(50)
    assert parts.ends == whole.ends and parts.complete  # bit for bit: the same additions in the same order


def test_a_reserved_timeout_keeps_its_place_among_simultaneous_events():
    import simpy

    from tessera.sim.timeouts import reserved_timeout

    env, order = simpy.Environment(), []
    late = reserved_timeout(env)  # taken first ...
    env.timeout(1.0).callbacks.append(lambda e: order.append("plain"))
    late(1.0).callbacks.append(lambda e: order.append("reserved"))  # ... scheduled second, at the same time
    env.run()
    assert order == ["reserved", "plain"] and env.now == 1.0


def test_spans_with_a_real_cost_model_match_one_event_per_iteration():
    """The profiled cost model gives its decode_step_terms to the spans, the cohort's and the plain ones (LinearCost
    above has none): the same records as one event per iteration, which calls iteration_time at every step."""
    from tessera.cost import make_cost_model
    from tessera.hardware import gpu
    from tessera.models import model
    from tessera.types import WorkerSpec
    from tessera.workload import build_workload

    llama, h100 = model("Llama-2-7B"), gpu("H100-SXM-80GB")
    cost = make_cost_model("profiled", llama, h100, 1)
    assert hasattr(cost, "decode_step_terms")
    requests = build_workload({"kind": "synthetic", "num_requests": 400, "seed": 3,
                               "lengths": {"kind": "uniform", "prompt_tokens": [20, 1500], "output_tokens": [5, 400]},
                               "arrival": {"kind": "poisson", "rate": 40.0}})

    def run(cohort, fast_forward=True):
        specs = [WorkerSpec(worker_id=i, gpu=h100, model=llama, tp=1) for i in range(2)]
        cluster = Cluster(specs, lambda s: cost, SchedulerConfig(), MemoryConfig(), make_router("round_robin"),
                          decode_cohort=cohort, fast_forward=fast_forward)
        return recorded_run(cluster, requests)[0], cluster

    lazy, cluster = run(True)
    spans, _ = run(False)
    per_iteration, reference = run(False, fast_forward=False)
    assert_same(lazy, spans)
    assert all(w._cohort is not None for w in cluster.workers)
    assert reference.workers[0].num_iterations == cluster.workers[0].num_iterations > 0
    # every step's end time is the same float; only sums taken per span (execution_s, busy_s, step durations as
    # differences of end times) and the KV-usage samples (one per event) differ from one event per iteration
    requests_a, requests_b = spans[0], per_iteration[0]
    for col in ("arrival_s", "start_s", "first_token_s", "finish_s"):
        pd.testing.assert_series_equal(requests_a[col], requests_b[col], check_exact=True)
    pd.testing.assert_series_equal(spans[3]["t_s"], per_iteration[3]["t_s"], check_exact=True)
    pd.testing.assert_series_equal(requests_a["execution_s"], requests_b["execution_s"], rtol=1e-12)
