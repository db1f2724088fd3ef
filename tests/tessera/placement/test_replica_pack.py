"""Replica packing: a valid plan, a certified optimum where the bound is tight, and never worse than LPT
on many workers; the MOSAIC placer skips the ILP only when its start is certified."""
import dataclasses

import pytest

from tessera.interface import PlacementProblem
from tessera.placement import MosaicConfig, MosaicPlacer, check_plan, make_placer
from tessera.placement.mosaic import combinatorial_bound
from tessera.placement.plan import plan_from_assignment
from tessera.placement.replica_pack import replica_pack_assignment


def problem(num_workers: int, heavy_prompts: int = 64, light_prompts: int = 8) -> PlacementProblem:
    # expert 0: heavy (replicable), experts 1-3: light (pinned); identical workers with ample memory
    experts = ("heavy", "a", "b", "c")
    prompts = [0] * heavy_prompts + [1, 2, 3] * light_prompts
    costs = [1.0] * heavy_prompts + [0.5] * (3 * light_prompts)
    return PlacementProblem(workers=tuple(f"w{i}" for i in range(num_workers)), experts=experts,
                            worker_memory_bytes=(100.0,) * num_workers, expert_memory_bytes=(10.0,) * 4,
                            expert_load_s=(2.0, 1.0, 1.0, 1.0), max_replicas=(num_workers, 1, 1, 1),
                            prompt_expert=tuple(prompts), prompt_cost_s=tuple(costs))


@pytest.mark.parametrize("num_workers", [2, 4, 16, 32])
def test_packing_is_a_valid_plan_and_at_least_as_good_as_lpt(num_workers):
    prob = problem(num_workers)
    plan = plan_from_assignment(prob, replica_pack_assignment(prob), "replica_pack")
    assert check_plan(prob, plan) == []
    assert plan.makespan_s >= combinatorial_bound(prob) - 1e-9
    assert plan.makespan_s <= make_placer("lpt").place(prob).makespan_s + 1e-9


def test_many_workers_certify_without_the_ilp():
    # only the heavy expert: 64 s of work over 16 replicas + 2 s load = the per-expert bound exactly.
    prob = problem(16, light_prompts=0)
    plan = MosaicPlacer(MosaicConfig(time_limit_s=5)).place(prob)
    assert "ILP not needed" in plan.message and plan.status == "optimal"
    assert plan.makespan_s <= combinatorial_bound(prob) * 1.01
    assert check_plan(prob, plan) == []


def test_tight_instances_still_go_to_the_ilp():
    # 2 workers: the bound is not met by the heuristics, so the ILP runs (and is never worse).
    prob = dataclasses.replace(problem(2), prompt_cost_s=tuple(c * (1 + (i % 7) / 10)
                                                              for i, c in enumerate(problem(2).prompt_cost_s)))
    plan = MosaicPlacer(MosaicConfig(time_limit_s=5)).place(prob)
    assert "ILP not needed" not in plan.message
    start = plan_from_assignment(prob, replica_pack_assignment(prob), "replica_pack")
    assert plan.makespan_s <= start.makespan_s + 1e-6
