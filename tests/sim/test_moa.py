"""The MoA pipeline in the simulator conserves prompts across stages and keeps stage order and memory."""
import pytest

from tessera.aggregation import make_aggregator
from tessera.hardware import gpu
from tessera.memory import MemoryConfig
from tessera.placement import CostConfig, build_placement_problem, make_placer
from tessera.placement.costs import load_time_s
from tessera.cost import make_cost_model
from tessera.scheduling import SchedulerConfig
from tessera.sim.moa import MoASimContext, run_aggregator_stage, run_expert_stage
from tessera.workload.moa import generate_moa_workload
from tessera.workload.moa_defaults import MoAConfig

H100 = gpu("H100-SXM-80GB")


@pytest.fixture(scope="module")
def setup():
    workload = generate_moa_workload(MoAConfig(datasets=("gpqa",), num_queries={"gpqa": 24}), seed=1)
    cost_cfg = CostConfig(memory=MemoryConfig())
    problem = build_placement_problem(workload, [H100] * 4, cost_cfg)
    names = list(problem.experts) + ["DeepSeek-R1-Distill-Qwen-7B"]
    ctx = MoASimContext(gpu=H100, num_gpus=4, scheduler=SchedulerConfig(), memory=cost_cfg.memory,
                        cost_for=lambda s: make_cost_model("roofline", s.model, H100, s.tp),
                        load_s={n: load_time_s(n, cost_cfg) for n in names},
                        load_tp_s={n: load_time_s(n, cost_cfg, 4) for n in names}, teardown_s=10.0)
    return workload, problem, ctx


@pytest.mark.parametrize("placer", ["sequential", "static", "least_loaded", "lpt", "mosaic"])
def test_every_expert_prompt_runs_once_on_a_replica_of_its_expert(setup, placer):
    workload, problem, ctx = setup
    plan = make_placer(placer).place(problem)
    stage = run_expert_stage(ctx, problem, plan, workload.expert_requests())
    ids = sorted(seq.request_id for seq, _ in stage.records)
    assert ids == sorted(r.request_id for r in workload.expert_requests())
    assert all(seq.status == "finished" and seq.num_generated == seq.max_output_tokens for seq, _ in stage.records)
    assert stage.end_s >= max(seq.finish_s + off for seq, off in stage.records) - 1e-9
    if not plan.tensor_parallel:  # each prompt served by a replica of its own expert on its assigned GPU
        by_id = {seq.request_id: seq for seq, _ in stage.records}
        for p, w in enumerate(plan.assignment):
            seq = by_id[problem.prompt_ids[p]]
            assert seq.request.model == problem.experts[problem.prompt_expert[p]]
            assert any(s.gpu == w and s.expert == seq.request.model for s in stage.segments)


def test_sequential_runs_experts_one_after_another(setup):
    workload, problem, ctx = setup
    stage = run_expert_stage(ctx, problem, make_placer("sequential").place(problem), workload.expert_requests())
    spans = sorted({(s.start_s, s.end_s) for s in stage.segments})
    assert all(a_end + ctx.teardown_s <= b_start + 1e-6 for (_, a_end), (b_start, _) in zip(spans, spans[1:]))


def test_aggregation_stage_gets_exactly_the_non_bypassed_queries_after_the_barrier(setup):
    workload, problem, ctx = setup
    plan = make_placer("mosaic").place(problem)
    stage1 = run_expert_stage(ctx, problem, plan, workload.expert_requests())
    done = {}
    for seq, off in stage1.records:
        done[seq.request.query_id] = max(done.get(seq.request.query_id, 0.0), seq.finish_s + off)
    policy = make_aggregator("majority", threshold=0.67)
    outcomes = [workload.aggregate(q, policy, done[q.query_id]) for q in workload.queries]
    requests = [o.request for o in outcomes if o.request is not None]
    bypassed = sum(o.request is None for o in outcomes)
    assert len(requests) + bypassed == len(workload.queries)
    assert all(r.arrival_s == pytest.approx(done[r.query_id]) for r in requests)  # pipelined arrivals
    stage2 = run_aggregator_stage(ctx, requests[0].model, requests, [0, 1, 2, 3],
                                  {g: stage1.end_s for g in range(4)}, tensor_parallel=False)
    assert sorted(s.request_id for s, _ in stage2.records) == sorted(r.request_id for r in requests)
    ready = stage1.end_s + ctx.load_s[requests[0].model]
    assert all(s.first_scheduled_s >= ready - 1e-9 for s, _ in stage2.records)


@pytest.mark.parametrize("placer", ["sequential", "mosaic"])
def test_kv_policies_run_inside_co_resident_and_tensor_parallel_moa_replicas(setup, placer):
    """FlexiCache on every replica (co-resident phases, and TP 4 over 2-KV-head models for sequential):
    every prompt still finishes once with all its tokens, and only the offloading policy moves bytes."""
    from dataclasses import replace

    from tessera.hardware import host_link
    from tessera.sim.kv_setup import KVSetup

    workload, problem, ctx = setup
    plan = make_placer(placer).place(problem)
    kv_ctx = replace(ctx, kv=KVSetup.from_conf({"name": "flexicache", "topk_pages": 4, "rerank_interval": 8}),
                     host_link=host_link(H100))
    stage = run_expert_stage(kv_ctx, problem, plan, workload.expert_requests())
    assert sorted(seq.request_id for seq, _ in stage.records) == sorted(r.request_id for r in workload.expert_requests())
    assert all(seq.status == "finished" and seq.num_generated == seq.max_output_tokens for seq, _ in stage.records)
    assert stage.kv_totals["pcie_d2h_bytes"] > 0 and stage.kv_totals["num_reloads"] > 0
    # every request's own copies are kept (requests.parquet's bytes_moved), and they are the replicas' whole traffic
    assert set(stage.kv_bytes) == {seq.request_id for seq, _ in stage.records}
    link_bytes = stage.kv_totals["pcie_h2d_bytes"] + stage.kv_totals["pcie_d2h_bytes"]
    if placer == "mosaic":  # co-resident replicas on one GPU: their shared link's traffic counted once
        assert sum(stage.kv_bytes.values()) == pytest.approx(link_bytes, rel=1e-9)
    else:  # TP 4 over 2-KV-head models: the links (x tp) carry 2.7% more than the requests' own sums (left open)
        assert sum(stage.kv_bytes.values()) == pytest.approx(link_bytes, rel=0.05)
    plain = run_expert_stage(ctx, problem, plan, workload.expert_requests())
    assert plain.kv_totals == {} and plain.kv_bytes == {}


def test_data_parallel_sequential_splits_each_expert_over_every_gpu_with_a_barrier(setup):
    """`sequential` without tensor parallelism (the runtime's CPU workers): one expert at a time on every GPU."""
    from dataclasses import replace

    from tessera.sim.moa import run_data_parallel

    workload, problem, ctx = setup
    requests = workload.expert_requests()
    stage = run_data_parallel(ctx, problem, requests)
    assert sorted(seq.request_id for seq, _ in stage.records) == sorted(r.request_id for r in requests)
    rounds: dict[str, list] = {}
    for s in stage.segments:
        rounds.setdefault(s.expert, []).append(s)
    assert all({s.gpu for s in segs} == set(range(ctx.num_gpus)) for segs in rounds.values()
               if sum(r.model == segs[0].expert for r in requests) >= ctx.num_gpus)
    spans = sorted((min(s.start_s for s in segs), max(s.end_s for s in segs)) for segs in rounds.values())
    assert all(a_end + ctx.teardown_s <= b_start + 1e-6 for (_, a_end), (b_start, _) in zip(spans, spans[1:]))
    plan = make_placer("mosaic").place(problem)
    assert any(len(phase) > 1 for phases in plan.phases.values() for phase in phases)  # co-resident replicas
    serial = run_expert_stage(replace(ctx, serial_loads=True), problem, plan, requests)
    for g, phases in plan.phases.items():  # one device loads a phase's replicas in turn, then serves them all
        assert len({round(s.ready_s, 9) for s in serial.segments if s.gpu == g}) == len(phases)
