"""MOSAIC ILP: brute-force optimum on tiny instances, contract of every placer, memory, infeasibility."""
import itertools

import pytest

from tessera.placement import (PLACERS, MoAPlacementProblem, MosaicConfig, MosaicPlacer,
                               PlacementInfeasible, check_plan, make_placer)
from tessera.placement.plan import worker_loads

GB = 1e9


def problem(costs, experts_of, num_workers=3, memory=(30, 18, 10), load=(1.0, 2.0, 0.5),
            worker_memory=40, caps=None):
    num_experts = len(memory)
    return MoAPlacementProblem(
        workers=tuple(f"gpu{w}" for w in range(num_workers)),
        experts=tuple(f"e{e}" for e in range(num_experts)),
        worker_memory_bytes=(worker_memory * GB,) * num_workers,
        expert_memory_bytes=tuple(m * GB for m in memory), expert_load_s=tuple(load),
        max_replicas=tuple(caps or (num_workers,) * num_experts),
        prompt_expert=tuple(experts_of), prompt_cost_s=tuple(costs))


def brute_force(prob):
    """Best makespan over all prompt->worker maps whose implied replicas fit memory and caps."""
    best = float("inf")
    W = range(len(prob.workers))
    for assignment in itertools.product(W, repeat=len(prob.prompt_expert)):
        replicas = {w: sorted({prob.prompt_expert[p] for p, a in enumerate(assignment) if a == w})
                    for w in W}
        if any(sum(prob.expert_memory_bytes[e] for e in es) > prob.worker_memory_bytes[w]
               for w, es in replicas.items()):
            continue
        if any(sum(e in es for es in replicas.values()) > prob.max_replicas[e]
               for e in set(prob.prompt_expert)):
            continue
        best = min(best, max(worker_loads(prob, replicas, list(assignment))))
    return best


TINY = [
    problem([9, 7, 6, 2, 2, 1, 3], [0, 0, 0, 1, 1, 2, 2]),
    problem([5, 5, 5, 5, 1, 1, 8], [0, 0, 0, 0, 1, 2, 2], caps=(3, 1, 1)),
    problem([4, 4, 3, 3, 3, 1, 1], [1, 1, 1, 0, 0, 2, 2], memory=(25, 25, 12)),
]


@pytest.mark.parametrize("prob", TINY)
def test_ilp_matches_brute_force(prob):
    exact = MosaicConfig(form="per_prompt", mip_gap=0.0, num_phases=1, epsilon=1e-4)
    plan = MosaicPlacer(exact).place(prob)
    assert plan.status == "optimal" and plan.fallback is None
    assert plan.makespan_s == pytest.approx(brute_force(prob), abs=1e-3)
    assert check_plan(prob, plan) == []
    assert plan.lower_bound_s <= plan.makespan_s + 1e-6
    # the bucketed form is exact when costs inside a bucket are equal (one bucket per prompt here)
    bucketed = MosaicPlacer(MosaicConfig(form="bucketed", num_buckets=8, mip_gap=0.0,
                                         num_phases=1, epsilon=1e-4)).place(prob)
    assert bucketed.makespan_s == pytest.approx(plan.makespan_s, abs=1e-3)
    # a greedy baseline whose plan needs no phases is never better than the optimum
    for name in ("lpt", "static", "least_loaded"):
        greedy = make_placer(name).place(prob)
        if all(len(phases) <= 1 for phases in greedy.phases.values()):
            assert greedy.makespan_s >= plan.makespan_s - 1e-6, name


@pytest.mark.parametrize("name", sorted(PLACERS))
def test_every_placer_assigns_each_prompt_once_within_memory(name):
    prob = problem([3, 3, 2, 2, 2, 1, 1, 4, 4, 1], [0, 0, 0, 1, 1, 1, 2, 0, 0, 2])
    plan = make_placer(name).place(prob)
    assert len(plan.assignment) == len(prob.prompt_expert)
    assert all(0 <= w < len(prob.workers) for w in plan.assignment)
    assert check_plan(prob, plan) == [], name
    assert plan.method == name


def test_phases_when_experts_cannot_all_be_resident():
    # 6 experts of 30 GB on 2 x 40 GB workers: at most one resident per worker at a time.
    prob = problem([4, 4, 4, 1, 1, 1, 1, 1, 2, 2], [0, 0, 0, 1, 2, 3, 4, 5, 5, 1],
                   num_workers=2, memory=(30,) * 6, load=(1.0,) * 6, caps=(2, 1, 1, 1, 1, 1))
    plan = MosaicPlacer(MosaicConfig(form="per_prompt")).place(prob)
    assert plan.fallback is None and check_plan(prob, plan) == []
    assert max(len(phases) for phases in plan.phases.values()) >= 3
    for w, phases in plan.phases.items():
        assert all(len(phase) == 1 for phase in phases)  # memory: one 30 GB replica per phase
    assert plan.makespan_s <= make_placer("lpt").place(prob).makespan_s + 1e-6


def test_expert_too_big_names_expert_worker_and_shortfall():
    prob = problem([1, 1, 1], [0, 1, 2], memory=(50, 10, 10), worker_memory=40)
    with pytest.raises(PlacementInfeasible, match=r"'e0' needs 50.0 GB.*'gpu0' has 40.0 GB.*short by 10.0 GB"):
        MosaicPlacer(MosaicConfig(fallback="raise")).place(prob)
    with pytest.raises(PlacementInfeasible, match="fallback 'lpt' fails too"):
        MosaicPlacer().place(prob)


def test_phase_limit_infeasible_falls_back_with_message():
    prob = problem([1] * 6, [0, 1, 2, 3, 4, 5], num_workers=2, memory=(30,) * 6,
                   load=(1.0,) * 6)
    plan = MosaicPlacer(MosaicConfig(max_phases=2)).place(prob)
    assert plan.status == "infeasible" and plan.fallback == "lpt"
    assert "max_phases" in plan.message and "short by" in plan.message
    assert check_plan(prob, plan) == []


def test_bad_problem_and_config_are_refused():
    bad = problem([1, 1], [0, 1], caps=(5, 1, 1))
    with pytest.raises(ValueError, match="max_replicas"):
        MosaicPlacer().place(bad)
    with pytest.raises(ValueError, match="placement.mip_gap"):
        MosaicConfig(mip_gap=2)
    with pytest.raises(ValueError, match="placement.name"):
        make_placer("round_robin")
