"""The placement problem built from costs measured on the runtime's workers, and every placer on it."""
import pytest

from tessera.placement import PlacementInputError, check_plan, make_placer
from tessera.placement.measured import MeasuredExpertCosts, PromptView, measured_problem

GB = 1e9


def costs(name, kind, output):
    return MeasuredExpertCosts(name, kind, 0.002, {1: 0.05, 8: 0.1}, 0.5, 0.5 * GB, 46_080, output,
                               96 if kind == "reasoning" else 12)


COSTS = {"r1": costs("r1", "reasoning", 80.0), "r2": costs("r2", "reasoning", 60.0),
         "i1": costs("i1", "instruct", 5.0), "i2": costs("i2", "instruct", 4.0)}


def prompts():
    names = ["r1", "r2", "i1", "i2", "r1", "r1", "i1", "r2"]
    return [PromptView(i, n, 70 + i) for i, n in enumerate(names)]


def test_costs_reservations_and_caps_follow_the_rules():
    problem, reserve = measured_problem(prompts(), COSTS, 2, 1.3 * GB, 8)
    assert problem.experts == ("r1", "r2", "i1", "i2")
    r1 = COSTS["r1"]
    assert problem.prompt_cost_s[0] == pytest.approx(0.002 * 70 + 80 * 0.1 / 8)
    assert reserve["r1"] == int(max(8 * (sum([70, 74, 75]) / 3 + 80), 75 + 96))
    assert problem.expert_memory_bytes[0] == pytest.approx(r1.weight_bytes + reserve["r1"] * r1.kv_bytes_per_token)
    assert problem.max_replicas == (2, 2, 1, 1)
    assert problem.prompt_cost_tp_s[0] == pytest.approx(problem.prompt_cost_s[0] / 2)


@pytest.mark.parametrize("name", ["sequential", "static", "least_loaded", "lpt", "mosaic"])
def test_every_placer_plans_measured_problems(name):
    problem, _ = measured_problem(prompts(), COSTS, 2, 1.3 * GB, 8)
    plan = make_placer(name).place(problem)
    assert check_plan(problem, plan) == []
    if not plan.tensor_parallel:  # 1.3 GB holds two 0.55 GB replicas: four experts need phases or two workers
        assert all(len(phase) <= 2 for phases in plan.phases.values() for phase in phases)


def test_missing_costs_are_named():
    with pytest.raises(PlacementInputError, match="no measured costs"):
        measured_problem([PromptView(0, "ghost", 10)], COSTS, 2, GB, 8)
