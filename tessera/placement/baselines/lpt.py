"""`lpt`: longest-processing-time-first greedy on profiled costs, opening replicas when it pays.

Prompts in decreasing cost go to the worker where they finish earliest, counting the expert's
load time on a worker that has no replica yet (only while under the replica cap). Also the ILP's
warm start and fallback.
"""
from __future__ import annotations

from tessera.interface import PlacementProblem
from tessera.placement.plan import PlacementPlan, plan_from_assignment
from tessera.placement.problem import check_problem


def lpt_assignment(problem: PlacementProblem) -> list[int]:
    """prompt -> worker by replica-aware LPT (deterministic: ties go to the lowest worker index)."""
    num_workers = len(problem.workers)
    loads = [0.0] * num_workers
    holders: dict[int, set[int]] = {}
    assignment = [0] * len(problem.prompt_expert)
    order = sorted(range(len(assignment)), key=lambda p: (-problem.prompt_cost_s[p], p))
    for p in order:
        e, cost = problem.prompt_expert[p], problem.prompt_cost_s[p]
        held = holders.setdefault(e, set())
        can_open = len(held) < problem.max_replicas[e]
        best_w, best_finish = -1, float("inf")
        for w in range(num_workers):
            if w in held:
                finish = loads[w] + cost
            elif can_open:
                finish = loads[w] + cost + problem.expert_load_s[e]
            else:
                continue
            if finish < best_finish:
                best_w, best_finish = w, finish
        if best_w not in held:
            held.add(best_w)
        loads[best_w] = best_finish
        assignment[p] = best_w
    return assignment


class LptPlacer:
    name = "lpt"

    def place(self, problem: PlacementProblem) -> PlacementPlan:
        check_problem(problem)
        return plan_from_assignment(problem, lpt_assignment(problem), self.name)
