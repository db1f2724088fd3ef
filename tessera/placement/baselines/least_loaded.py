"""`least_loaded`: experts, most prompts first, each pinned to the worker with the fewest prompts.

Balances prompt counts, not costs: blind to a reasoning prompt costing several instruct prompts.
"""
from __future__ import annotations

from collections import Counter

from tessera.interface import PlacementProblem
from tessera.placement.plan import PlacementPlan, plan_from_assignment
from tessera.placement.problem import check_problem


class LeastLoadedPlacer:
    name = "least_loaded"

    def place(self, problem: PlacementProblem) -> PlacementPlan:
        check_problem(problem)
        counts = Counter(problem.prompt_expert)
        prompts_on = [0] * len(problem.workers)
        home = {}
        for e in sorted(counts, key=lambda e: (-counts[e], e)):
            w = min(range(len(prompts_on)), key=lambda w: (prompts_on[w], w))
            home[e] = w
            prompts_on[w] += counts[e]
        return plan_from_assignment(problem, [home[e] for e in problem.prompt_expert], self.name)
