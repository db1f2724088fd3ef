"""Per-iteration records, the per-request time breakdown and MFU/MBU: decode spans record exactly what one event per
iteration does, the records add up to the worker's counters, and utilisation stays under the roofline's ceilings."""
import numpy as np
import pandas as pd
import pytest

from tessera.cost import make_cost_model
from tessera.hardware import gpu
from tessera.interface import BatchShape
from tessera.memory import MemoryConfig
from tessera.models import active_linear_params_per_layer, model
from tessera.scheduling import SchedulerConfig
from tessera.results import summarize
from tessera.sim import Cluster, kv_usage_frame, make_router, request_frame, worker_frame
from tessera.sim.batch_log import WorkTotals, enable_batch_log
from tessera.sim.records import batch_frame
from tessera.sim.utilization import hbm_bytes
from tessera.types import Request, WorkerSpec
from tests.sim.fakes import LinearCost, worker_specs

LLAMA2 = model("Llama-2-7B")
H100 = gpu("H100-SXM-80GB")


def tiny_run(fast_forward: bool):
    """Two workers of the 100-block tiny pool, staggered arrivals: prefills, decode spans, arrivals mid-span and
    preemptions (the pool is too small for every request at once)."""
    rng = np.random.default_rng(3)
    arrivals, prompts, outputs = np.cumsum(rng.exponential(0.004, 40)), rng.integers(20, 300, 40), rng.integers(5, 120, 40)
    requests = [Request(i, float(t), int(p), int(o)) for i, (t, p, o) in enumerate(zip(arrivals, prompts, outputs))]
    cluster = Cluster(worker_specs(2), lambda s: LinearCost(), SchedulerConfig(max_num_seqs=8),
                      MemoryConfig(0.5, 0.0), make_router("round_robin"), fast_forward=fast_forward)
    enable_batch_log(cluster)
    return cluster.run(requests)


def test_spans_record_the_same_iterations_as_one_event_per_iteration():
    fast, slow = tiny_run(True), tiny_run(False)
    assert sum(w.num_preemptions for w in slow.workers) > 0  # the scenario exercises preemption
    b_fast, b_slow = batch_frame(fast), batch_frame(slow)
    assert len(b_fast) == len(b_slow) == sum(w.num_iterations for w in slow.workers)
    pd.testing.assert_frame_equal(b_fast, b_slow, check_exact=False, rtol=1e-9)
    cols = ["execution_s", "preemption_s", "scheduling_delay_s"]
    pd.testing.assert_frame_equal(request_frame(fast)[cols], request_frame(slow)[cols], check_exact=False, rtol=1e-9)
    for wf, ws in zip(fast.workers, slow.workers):
        assert wf.totals.iterations == ws.totals.iterations
        assert wf.totals.decode_kv_tokens == pytest.approx(ws.totals.decode_kv_tokens)
        assert wf.totals.sampled_tokens == ws.totals.sampled_tokens


def usage_changes(frame: pd.DataFrame) -> list[tuple[int, float, int]]:
    """Each worker's KV usage series reduced to where it changes: (worker, t, used blocks), the last at each time."""
    out = []
    for worker, g in frame.groupby("worker", sort=True):
        last = g.groupby("t_s", sort=True)["used_blocks"].last()
        prev = None
        for t, used in last.items():
            if used != prev:
                out.append((int(worker), round(float(t), 9), int(used)))
                prev = used
    return out


@pytest.mark.parametrize("family, cohort", [("vllm_v1", True), ("vllm_v1", False), ("vllm_v0", False)])
def test_spans_record_the_kv_usage_of_every_iteration(family, cohort):
    """A decode span allocates its blocks when it ends; its usage series still changes where one event per iteration
    does (was: held at the span's first value, a mean 3-6 points low under memory pressure)."""
    rng = np.random.default_rng(5)
    arrivals = np.cumsum(rng.exponential(0.01, 40))
    prompts, outputs = rng.integers(20, 300, 40), rng.integers(5, 120, 40)
    requests = [Request(i, float(t), int(p), int(o)) for i, (t, p, o) in enumerate(zip(arrivals, prompts, outputs))]
    runs = []
    for fast in (True, False):
        cluster = Cluster(worker_specs(2), lambda s: LinearCost(), SchedulerConfig(max_num_seqs=8, family=family),
                          MemoryConfig(0.5, 0.0), make_router("round_robin"), fast_forward=fast, decode_cohort=cohort)
        runs.append(cluster.run(requests))
    fast, slow = (kv_usage_frame(r) for r in runs)
    assert len(fast) < len(slow)  # spans record changes only
    assert usage_changes(fast) == usage_changes(slow)
    assert summarize(request_frame(runs[0]), fast)["kv_utilisation"] == pytest.approx(
        summarize(request_frame(runs[1]), slow)["kv_utilisation"], rel=1e-12)


def test_records_add_up_to_the_workers_counters():
    run = tiny_run(True)
    batches = batch_frame(run)
    for w in run.workers:
        mine = batches[batches["worker"] == w.worker_id]
        assert len(mine) == w.num_iterations
        assert mine["duration_s"].sum() == pytest.approx(w.busy_s)
        assert mine["preemptions"].sum() == w.num_preemptions
        ends = (mine["t_s"] + mine["duration_s"]).to_numpy()
        assert (mine["t_s"].to_numpy()[1:] >= ends[:-1] - 1e-12).all()  # one iteration at a time, in order
        assert mine["prefill_tokens"].sum() == w.totals.prefill_tokens
        assert mine["decode_seqs"].sum() == w.totals.decode_seqs


def test_breakdown_splits_each_requests_time_in_the_system():
    run = tiny_run(True)
    frame = request_frame(run)
    done = frame[frame["status"] == "finished"]
    e2e = done["finish_s"] - done["arrival_s"]
    assert (done["execution_s"] > 0).all() and (done["execution_s"] <= e2e + 1e-12).all()
    assert (done["scheduling_delay_s"] >= -1e-12).all()
    assert ((done["preemption_s"] > 0) == (done["preemptions"] > 0)).all()
    assert (done["scheduling_delay_s"] >= done["start_s"] - done["arrival_s"] - 1e-12).all()  # includes first queueing
    alone = Cluster(worker_specs(1), lambda s: LinearCost(), SchedulerConfig(), MemoryConfig(0.5, 0.0),
                    make_router("round_robin")).run([Request(0, 0.0, 100, 4)])
    one = request_frame(alone).iloc[0]  # alone on the worker: every moment in the system is in an iteration
    assert one["execution_s"] == pytest.approx(one["finish_s"] - one["arrival_s"])
    assert one["scheduling_delay_s"] == pytest.approx(0.0, abs=1e-12) and one["preemption_s"] == 0.0


def roofline_run(requests):
    cost = make_cost_model("roofline", LLAMA2, H100, 1)
    cluster = Cluster([WorkerSpec(0, H100, LLAMA2, 1)], lambda s: cost, SchedulerConfig(), MemoryConfig(),
                      make_router("round_robin"))
    return worker_frame(cluster.run(requests)).iloc[0], cost.efficiency


def test_mfu_of_prefills_and_mbu_of_decodes_approach_the_roofline_ceilings():
    w, eff = roofline_run([Request(i, 0.0, 4000, 1) for i in range(8)])  # compute-bound prefills
    assert 0.8 * eff.flops_fraction < w["mfu_busy"] <= eff.flops_fraction
    assert w["mbu_busy"] < 0.1
    w, eff = roofline_run([Request(i, 0.0, 2000, 300) for i in range(32)])  # memory-bound decodes
    assert 0.6 * eff.hbm_fraction < w["mbu_busy"] <= eff.hbm_fraction
    assert w["mfu_busy"] < 0.3
    assert w["mfu"] <= w["mfu_busy"] and w["mbu"] <= w["mbu_busy"]  # over the run >= busy time


def test_a_moe_models_mbu_counts_the_experts_each_step_touches():
    """Mostly one-token decodes beside a few long prefills: the experts read are summed per step (a decode touches
    experts_per_token of them), not taken from the mean batch (which touches nearly all of them: MBU above 1)."""
    moe = model("Qwen3-30B-A3B")
    cost = make_cost_model("roofline", moe, H100, 1)
    cluster = Cluster([WorkerSpec(0, H100, moe, 1)], lambda s: cost, SchedulerConfig(), MemoryConfig(),
                      make_router("round_robin"))
    run = cluster.run([Request(i, 30.0 * i, 8000, 200) for i in range(4)])
    w = worker_frame(run).iloc[0]
    assert 0.3 * cost.efficiency.hbm_fraction < w["mbu_busy"] <= cost.efficiency.hbm_fraction
    totals = run.workers[0].totals
    assert sum(totals.batch_tokens.values()) == totals.iterations
    assert sum(n * c for n, c in totals.batch_tokens.items()) == totals.tokens


def test_a_moe_models_expert_bytes_add_up_per_iteration():
    """hbm_bytes over many iterations is the sum of each one's: a one-token decode reads experts_per_token experts
    (a dense model of its active weights), an 8,000-token prefill nearly all of them."""
    moe = model("Qwen3-30B-A3B")
    spec = WorkerSpec(0, H100, moe, 1)
    decode, prefill = BatchShape(decode_seqs=1), BatchShape(prefill_tokens=8000, prefill_seqs=1)
    mixed, one, big = WorkTotals(), WorkTotals(), WorkTotals()
    for _ in range(100):
        mixed.add(decode)
    mixed.add(prefill)
    one.add(decode)
    big.add(prefill)
    assert hbm_bytes(spec, mixed) == pytest.approx(100 * hbm_bytes(spec, one) + hbm_bytes(spec, big))
    d, kv_token = moe.dtype_bytes, moe.num_layers * 2 * moe.num_kv_heads * moe.head_dim * moe.dtype_bytes
    active = moe.num_layers * active_linear_params_per_layer(moe) + moe.vocab_size * moe.hidden_size
    assert hbm_bytes(spec, one) == pytest.approx(active * d + kv_token)


def test_every_sequence_of_a_step_takes_one_lm_head_token():
    totals = WorkTotals()
    totals.add(BatchShape(prefill_tokens=300, prefill_seqs=3, decode_seqs=2, decode_kv_tokens=50.0))
    totals.add(BatchShape(prefill_tokens=100))  # no prompt count: one prompt
    totals.add_decode_span(steps=4, batch_size=5, kv_tokens=400.0)
    assert totals.sampled_tokens == 5 + 1 + 20
