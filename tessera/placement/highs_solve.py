"""Solve a Pyomo model with HiGHS through Pyomo's new solver API, with time limit, gap and MIP start.

Returns a SolveReport (status, incumbent objective, dual bound, gap, wall time) and loads the
incumbent into the model's variables when there is one, including after a time-out.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pyomo.environ as pyo
from pyomo.contrib.solver.common.factory import SolverFactory
from pyomo.contrib.solver.common.results import TerminationCondition

_STATUS = {
    TerminationCondition.convergenceCriteriaSatisfied: "optimal",
    TerminationCondition.maxTimeLimit: "time_limit",
    TerminationCondition.provenInfeasible: "infeasible",
    TerminationCondition.locallyInfeasible: "infeasible",
    TerminationCondition.infeasibleOrUnbounded: "infeasible",
}


@dataclass(frozen=True, slots=True)
class SolveReport:
    status: str  # optimal (within the gap) | time_limit | infeasible | error:<condition>
    has_incumbent: bool
    objective: float | None
    bound: float | None  # the solver's proven bound on the objective
    solve_time_s: float
    mip_start_used: bool = False

    @property
    def gap(self) -> float | None:
        if self.objective is None or self.bound is None or self.objective <= 0:
            return None
        return max(0.0, (self.objective - self.bound) / self.objective)


def solve(model: pyo.ConcreteModel, *, time_limit_s: float, mip_gap: float,
          threads: int | None = None, mip_start: list | None = None) -> SolveReport:
    """Solve `model` in place. mip_start: (Pyomo VarData, value) pairs, a complete warm start."""
    opt = SolverFactory("highs")
    start = time.perf_counter()
    used_start = bool(mip_start) and _set_mip_start(opt, model, mip_start)
    # After set_instance the model is unchanged; re-syncing it would drop the MIP start.
    frozen = {"auto_updates": {key: False for key in opt.config.auto_updates.keys()}} if used_start else {}
    results = opt.solve(model, time_limit=time_limit_s, rel_gap=mip_gap, threads=threads,
                        load_solutions=False, raise_exception_on_nonoptimal_result=False, **frozen)
    elapsed = time.perf_counter() - start
    has_incumbent = results.incumbent_objective is not None
    if has_incumbent:
        results.solution_loader.load_vars()
    condition = results.termination_condition
    status = _STATUS.get(condition, f"error:{condition.name}")
    bound = results.objective_bound
    bound = None if bound is None or not np.isfinite(bound) else float(bound)
    return SolveReport(status, has_incumbent, results.incumbent_objective, bound, elapsed, used_start)


def _set_mip_start(opt, model: pyo.ConcreteModel, values: list) -> bool:
    """Hand HiGHS a starting incumbent. The new API has no warm-start option for HiGHS, so this uses
    the persistent interface's column map (private); on any mismatch it quietly skips the start."""
    try:
        opt.set_instance(model)
        column = opt._pyomo_var_to_solver_var_map
        index = np.array([column[id(var)] for var, _ in values], dtype=np.int32)
        value = np.array([v for _, v in values], dtype=np.float64)
        opt._solver_model.setSolution(len(index), index, value)
        return True
    except (AttributeError, KeyError, TypeError):
        return False
