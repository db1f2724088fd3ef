"""Profiled costs from the cost model, and MOSAIC on a (small) real MoA expert stage."""
import pytest

from tessera.hardware import gpu
from tessera.placement import (CostConfig, MosaicConfig, build_placement_problem, check_plan,
                               make_placer, profile_expert)
from tessera.workload.moa import generate_moa_workload
from tessera.workload.moa_defaults import MoAConfig


@pytest.fixture(scope="module")
def workload():
    return generate_moa_workload(MoAConfig(datasets=("gpqa",)), seed=1)


@pytest.fixture(scope="module")
def prob(workload):
    return build_placement_problem(workload, ["H100"] * 4)


def test_profile_numbers_follow_the_cost_model():
    h100 = gpu("H100")
    profile = profile_expert("DeepSeek-R1-Distill-Llama-8B", h100, CostConfig(), 200, 1500)
    # decode of an 8B bf16 model is bound by reading ~16 GB of weights at 0.8 x 3.35 TB/s
    assert 5e-3 < profile.decode_step_s[1] < 9e-3
    assert profile.decode_step_at(32) < 32 * profile.decode_step_s[1] / 4  # batching amortises
    assert profile.memory_bytes > profile.weight_bytes + profile.kv_reserve_tokens * profile.kv_bytes_per_token
    assert profile.kv_reserve_tokens >= 200 + 32768  # room for one longest sequence
    assert profile.load_s == pytest.approx(15.0 + 16.06e9 / 5e9, rel=0.01)


def test_problem_from_workload(workload, prob):
    assert len(prob.prompt_expert) == 3 * 198 and len(prob.workers) == 4
    assert prob.prompt_ids == tuple(r.request_id for r in workload.expert_requests())
    kinds = dict(zip(prob.experts, prob.expert_kinds))
    cost_by_kind = {"reasoning": [], "instruct": []}
    for p, e in enumerate(prob.prompt_expert):
        cost_by_kind[kinds[prob.experts[e]]].append(prob.prompt_cost_s[p])
    # reasoning prompts are predicted to decode ~3x longer
    assert min(cost_by_kind["reasoning"]) > max(cost_by_kind["instruct"])
    caps = dict(zip(prob.experts, prob.max_replicas))
    assert all(caps[e] == (4 if kinds[e] == "reasoning" else 1) for e in prob.experts)  # pin_light
    assert len(prob.prompt_cost_tp_s) == len(prob.prompt_cost_s)
    assert build_placement_problem(workload, ["H100"] * 4) == prob  # same seed, same problem


def test_oracle_and_quantile_predictors(workload, prob):
    oracle = build_placement_problem(workload, ["H100"] * 4, CostConfig(length_predictor="oracle"))
    assert oracle.prompt_cost_s != prob.prompt_cost_s
    with pytest.raises(ValueError, match="costs.length_predictor"):
        CostConfig(length_predictor="median")


def test_mosaic_beats_baselines_on_the_expert_stage(prob):
    plans = {name: make_placer(name).place(prob) for name in ("static", "least_loaded", "lpt")}
    plans["mosaic"] = make_placer("mosaic", time_limit_s=5.0).place(prob)
    for name, plan in plans.items():
        assert check_plan(prob, plan) == [], name
    assert plans["mosaic"].makespan_s <= min(p.makespan_s for p in plans.values()) + 1e-6
    replicas = {prob.experts[e]: sum(e in es for es in plans["mosaic"].replicas.values())
                for e in set(prob.prompt_expert)}
    assert all(n == 1 for e, n in replicas.items() if "R1" not in e)  # light experts pinned
