"""`static`: each active expert pinned to one worker round-robin (expert order), no replication.

The load-imbalance baseline of MOSAIC's abstract: the worker hosting a reasoning expert straggles.
"""
from __future__ import annotations

from tessera.interface import PlacementProblem
from tessera.placement.plan import PlacementPlan, plan_from_assignment
from tessera.placement.problem import active_experts, check_problem


class StaticPlacer:
    name = "static"

    def place(self, problem: PlacementProblem) -> PlacementPlan:
        check_problem(problem)
        home = {e: i % len(problem.workers) for i, e in enumerate(active_experts(problem))}
        return plan_from_assignment(problem, [home[e] for e in problem.prompt_expert], self.name)
