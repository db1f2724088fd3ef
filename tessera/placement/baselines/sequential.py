"""`sequential`: Symbolic-MoE as released: one expert at a time, tensor-parallel over all workers.

Each active expert (in index order) is loaded on the whole group, runs all its prompts, and is torn
down (teardown_s) before the next. Needs MoAPlacementProblem's TP costs; without them it assumes
perfect TP scaling (cost / number of workers) and says so in the plan's message.
"""
from __future__ import annotations

from tessera.interface import PlacementProblem
from tessera.placement.plan import PlacementPlan
from tessera.placement.problem import MoAPlacementProblem, active_experts, check_problem


class SequentialPlacer:
    name = "sequential"

    def place(self, problem: PlacementProblem) -> PlacementPlan:
        check_problem(problem)
        num_workers = len(problem.workers)
        order = active_experts(problem)
        has_tp = isinstance(problem, MoAPlacementProblem) and bool(problem.prompt_cost_tp_s)
        if has_tp:
            cost, load = problem.prompt_cost_tp_s, problem.expert_load_tp_s
            teardown, message = problem.teardown_s, ""
        else:
            cost = [c / num_workers for c in problem.prompt_cost_s]
            load, teardown = problem.expert_load_s, 0.0
            message = "no tensor-parallel costs given: assumed perfect TP scaling (optimistic)"
        total = sum(load[e] + teardown for e in order) + sum(cost)
        replicas = {w: list(order) for w in range(num_workers)}
        phases = {w: [[e] for e in order] for w in range(num_workers)}
        return PlacementPlan(replicas, [0] * len(problem.prompt_expert), total, self.name,
                             phases=phases, tensor_parallel=True,
                             worker_load_s=[total] * num_workers, message=message)
