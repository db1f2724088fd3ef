"""vLLM 0.5-0.6 multi-step scheduling (engine.num_scheduler_steps, family vllm_v0): a decode batch runs N steps
before the scheduler runs again, so a request arriving meanwhile waits for the group's end; spans and one event per
iteration agree exactly."""
from collections import deque

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tessera.memory import MemoryConfig
from tessera.scheduling import SchedulerConfig, make_scheduler
from tessera.sim import Cluster, make_router, request_frame
from tessera.sim.block_pool import BlockPool
from tessera.types import Request
from tests.sim.fakes import LinearCost, worker_specs
from tests.sim.helpers import recorded_run, requests_strategy
from tests.tessera.scheduling.test_families import decoding, seq


def test_nobody_is_admitted_inside_a_group_and_the_group_restarts_after_n_steps():
    sched = make_scheduler(SchedulerConfig(family="vllm_v0", num_scheduler_steps=4))
    pool = BlockPool(1000, 16)
    running = [decoding(0)]
    pool.allocate(running[0], 32)
    waiting = deque()
    kinds = []
    for step in range(9):
        if step == 1:
            waiting.append(seq(1, 40))  # arrives during the first group (steps 0-3)
        batch = sched.schedule(waiting, running, pool)
        kinds.append("prefill" if batch.seqs[0].num_computed_tokens == 0 else "decode")
        for s, n in zip(batch.seqs, batch.num_scheduled_tokens):  # the step's tokens are computed
            s.num_computed_tokens += n
            if s.num_computed_tokens == s.num_tokens:
                s.num_tokens += 1
    # steps 0-3: the group; step 4: the scheduler runs and the waiting prefill goes first; then a new group
    assert kinds == ["decode"] * 4 + ["prefill"] + ["decode"] * 4


def test_one_step_groups_are_the_plain_v0_scheduler():
    assert make_scheduler(SchedulerConfig(family="vllm_v0")).group_steps == 1


@pytest.mark.parametrize("family", ["vllm_v1", "sarathi", "orca"])
def test_other_families_refuse_multi_step_by_name(family):
    with pytest.raises(ValueError, match="scheduler.num_scheduler_steps=4 is invalid: use 1 with this family"):
        SchedulerConfig(family=family, num_scheduler_steps=4)
    with pytest.raises(ValueError, match="scheduler.num_scheduler_steps=0 is invalid"):
        SchedulerConfig(family="vllm_v0", num_scheduler_steps=0)


def run(reqs, steps, fast_forward, max_seqs=6):
    cluster = Cluster(worker_specs(1), lambda s: LinearCost(),
                      SchedulerConfig(family="vllm_v0", max_num_seqs=max_seqs, max_num_batched_tokens=512,
                                      num_scheduler_steps=steps),
                      MemoryConfig(0.5, 0.0), make_router("round_robin"), fast_forward=fast_forward)
    frames, _ = recorded_run(cluster, [Request(i, t, p, o) for i, (t, p, o) in enumerate(sorted(reqs))])
    return frames


def assert_close(a, b, sums):
    """Exactly equal but for `sums`, float sums that spans add in another order (rtol 1e-9)."""
    pd.testing.assert_frame_equal(a.drop(columns=sums), b.drop(columns=sums), check_exact=True)
    pd.testing.assert_frame_equal(a[sums], b[sums], rtol=1e-9)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reqs=requests_strategy, steps=st.integers(2, 12), max_seqs=st.integers(1, 8))
def test_decode_spans_keep_the_groups_exactly(reqs, steps, max_seqs):
    """Arrivals mid-span run the span on to its group's end; finishes and full pools end spans mid-group. Every
    request's times, every count and every iteration's start and shape agree exactly; sums a span adds once
    (execution, busy time, MFU, MBU) and its iteration durations (differences of its end times) to rtol 1e-9;
    KV usage is sampled at scheduler calls, so it is not compared."""
    (requests, workers, _, batches), (requests1, workers1, _, batches1) = (
        run(reqs, steps, True, max_seqs), run(reqs, steps, False, max_seqs))
    assert_close(requests, requests1, ["execution_s", "scheduling_delay_s"])  # the delay: finish less the sums
    assert_close(workers, workers1, list(workers.select_dtypes("float").columns))
    assert_close(batches, batches1, ["duration_s"])


def test_an_arrival_waits_for_the_groups_end():
    reqs = [Request(0, 0.0, 40, 200), Request(1, 0.052, 40, 5)]  # the second arrives while the first decodes
    starts = {}
    for steps in (1, 8):
        cluster = Cluster(worker_specs(1), lambda s: LinearCost(),
                          SchedulerConfig(family="vllm_v0", num_scheduler_steps=steps),
                          MemoryConfig(0.5, 0.0), make_router("round_robin"))
        (requests, _, _, batches), _ = recorded_run(cluster, reqs)
        start = starts[steps] = requests.loc[1, "start_s"]
        decodes = batches[batches["decode_seqs"] > 0]
        starts[steps, "decodes before"] = int((decodes["t_s"] < start).sum())
        starts[steps, "decode in progress at arrival"] = int((decodes["t_s"] < 0.052).sum())
    # without groups its prefill follows the decode in progress when it arrived; with groups of 8 the group's end
    assert starts[1, "decodes before"] == starts[1, "decode in progress at arrival"]
    arrived_in = starts[8, "decode in progress at arrival"]
    assert starts[8, "decodes before"] == -(-arrived_in // 8) * 8 > arrived_in
    assert starts[8] > starts[1]
