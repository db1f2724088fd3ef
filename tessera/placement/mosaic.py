"""`mosaic`: the MOSAIC placer: build the ILP, warm-start it from LPT, solve with HiGHS, extract a plan.

On a time-out the incumbent is returned (gap reported); with no incumbent, or when the instance is
infeasible (the message names the expert and worker short of memory and by how much), the
configured fallback placer's plan is returned with `fallback` and `message` set.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import pyomo.environ as pyo

from tessera.interface import PlacementProblem
from tessera.placement.baselines import (LeastLoadedPlacer, LptPlacer, SequentialPlacer,
                                         StaticPlacer, lpt_assignment)
from tessera.placement.highs_solve import SolveReport, solve
from tessera.placement.ilp_model import Bucket, build_model, make_buckets
from tessera.placement.phases import MemoryShortage, choose_num_phases
from tessera.placement.plan import PlacementPlan, plan_from_assignment, worker_loads
from tessera.placement.problem import (PlacementInputError, active_experts, check_problem, is_finite_real,
                                       is_whole_number)
from tessera.placement.replica_pack import replica_pack_assignment

FORMS = ("auto", "per_prompt", "bucketed")
FALLBACKS = ("lpt", "static", "least_loaded", "sequential", "raise")


class PlacementInfeasible(RuntimeError):
    """No plan satisfies the constraints and the configured fallback is `raise`."""


@dataclass(frozen=True, slots=True)
class MosaicConfig:
    """ILP settings. form auto: per-prompt while prompts x workers <= max_prompt_binaries.

    num_phases: None chooses the fewest memory-feasible phases + 1, at most max_phases.
    critical_path_cut: add "lambda_e + work_e / replicas_e <= T" (helps with many workers).
    epsilon: seconds charged per replica (tie-break: fewer replicas).
    """

    time_limit_s: float = 10.0
    mip_gap: float = 0.01
    form: str = "auto"
    max_prompt_binaries: int = 1_000
    num_buckets: int = 4
    num_phases: int | None = None
    max_phases: int = 4
    epsilon: float = 1e-3
    warm_start: bool = True
    compute_lp_bound: bool = False
    critical_path_cut: bool = False
    threads: int | None = None
    fallback: str = "lpt"

    def __post_init__(self) -> None:
        def whole(value, low: int = 1) -> bool:
            return is_whole_number(value) and value >= low

        def real(value) -> bool:
            return is_finite_real(value)

        checks = [
            ("time_limit_s", real(self.time_limit_s) and self.time_limit_s > 0, "a finite, positive number of seconds"),
            ("mip_gap", real(self.mip_gap) and 0 <= self.mip_gap < 1, "a relative gap in [0, 1), e.g. 0.01"),
            ("form", self.form in FORMS, f"one of {', '.join(FORMS)}"),
            ("max_prompt_binaries", whole(self.max_prompt_binaries, 0), "a whole number >= 0"),
            ("num_buckets", whole(self.num_buckets), "a whole number >= 1"),
            ("num_phases", self.num_phases is None or whole(self.num_phases), "None or a whole number >= 1"),
            ("max_phases", whole(self.max_phases), "a whole number >= 1"),
            ("epsilon", real(self.epsilon) and self.epsilon >= 0, "a small, finite number of seconds >= 0"),
            ("warm_start", isinstance(self.warm_start, bool), "true or false"),
            ("compute_lp_bound", isinstance(self.compute_lp_bound, bool), "true or false"),
            ("critical_path_cut", isinstance(self.critical_path_cut, bool), "true or false"),
            ("threads", self.threads is None or whole(self.threads), "None (HiGHS decides) or a whole number >= 1"),
            ("fallback", self.fallback in FALLBACKS, f"one of {', '.join(FALLBACKS)}"),
        ]
        for name, ok, allowed in checks:
            if not ok:
                raise PlacementInputError(f"placement.{name}={getattr(self, name)!r} is invalid: use {allowed}")


class MosaicPlacer:
    name = "mosaic"

    def __init__(self, config: MosaicConfig | None = None):
        self.config = config or MosaicConfig()

    def place(self, problem: PlacementProblem) -> PlacementPlan:
        started = time.perf_counter()  # time_limit_s budgets the whole placement, model build included
        check_problem(problem)
        cfg = self.config
        try:
            num_phases = choose_num_phases(problem, cfg.num_phases, cfg.max_phases)
        except MemoryShortage as shortage:
            return self._fallback(problem, "infeasible", str(shortage))
        buckets = self._buckets(problem)
        start_plan = _start_plan(problem, num_phases) if cfg.warm_start else None
        if start_plan is not None:
            bound = combinatorial_bound(problem)
            if start_plan.makespan_s <= bound * (1 + cfg.mip_gap):  # certified: no need for the ILP
                start_plan.method, start_plan.status = self.name, "optimal"
                start_plan.lower_bound_s, start_plan.gap = bound, max(0.0, start_plan.makespan_s / bound - 1)
                start_plan.solve_time_s = time.perf_counter() - started
                start_plan.message = (f"{start_plan.message or 'warm start'} within mip_gap of the "
                                      "combinatorial lower bound; ILP not needed")
                if cfg.compute_lp_bound:
                    start_plan.lp_bound_s = lp_relaxation_bound(problem, num_phases, cfg.epsilon)
                return start_plan
        cap = None if start_plan is None else _model_makespan(problem, buckets, start_plan)
        model = build_model(problem, buckets=buckets, num_phases=num_phases, epsilon=cfg.epsilon,
                            makespan_cap_s=None if cap is None else cap * (1 + 1e-6),
                            critical_path_cut=cfg.critical_path_cut)
        if len(set(problem.worker_memory_bytes)) == 1:  # identical workers are interchangeable
            model.r[_heaviest_expert(problem), 0].fix(1)
        start = None if start_plan is None else _mip_start(problem, model, buckets, num_phases,
                                                           start_plan, cap)
        remaining_s = max(1.0, cfg.time_limit_s - (time.perf_counter() - started))
        report = solve(model, time_limit_s=remaining_s, mip_gap=cfg.mip_gap,
                       threads=cfg.threads, mip_start=start)
        if not report.has_incumbent:
            why = ("the ILP is infeasible: replica caps, memory and phases admit no plan"
                   if report.status == "infeasible" else
                   f"HiGHS stopped ({report.status}) after {report.solve_time_s:.1f} s without a plan")
            return self._fallback(problem, report.status, why, report)
        plan = self._extract(problem, model, buckets, num_phases, report)
        if cfg.compute_lp_bound:
            plan.lp_bound_s = lp_relaxation_bound(problem, num_phases, cfg.epsilon)
        return plan

    def _buckets(self, problem: PlacementProblem) -> list[Bucket] | None:
        size = len(problem.prompt_expert) * len(problem.workers)
        per_prompt = self.config.form == "per_prompt" or (
            self.config.form == "auto" and size <= self.config.max_prompt_binaries)
        return None if per_prompt else make_buckets(problem, self.config.num_buckets)

    def _extract(self, problem, model, buckets, num_phases, report: SolveReport) -> PlacementPlan:
        E, W = active_experts(problem), range(len(problem.workers))
        replicas = {w: [e for e in E if model.r[e, w].value > 0.5] for w in W}
        if buckets is None:
            assignment = [max(W, key=lambda w: model.y[p, w].value)
                          for p in range(len(problem.prompt_expert))]
        else:
            counts = {(b, w): int(round(model.n[b, w].value)) for b in range(len(buckets)) for w in W}
            assignment = deal_buckets(problem, buckets, counts, replicas)
        slack = _max_penalty(problem, self.config.epsilon)
        lower = None if report.bound is None else max(0.0, report.bound - slack)
        form = "per_prompt" if buckets is None else "bucketed"
        plan = plan_from_assignment(
            problem, assignment, self.name, replicas=replicas, lower_bound_s=lower,
            solve_time_s=report.solve_time_s, status=report.status, gap=report.gap,
            message=f"{form} ILP, {num_phases} phase(s), mip start "
                    f"{'used' if report.mip_start_used else 'not used'}")
        if num_phases > 1:
            plan.phases = {w: _phases_of(model, E, w, num_phases) for w in W}
        return plan

    def _fallback(self, problem, status: str, why: str, report: SolveReport | None = None
                  ) -> PlacementPlan:
        name = self.config.fallback
        if name == "raise":
            raise PlacementInfeasible(f"mosaic placement failed: {why}; fix: see the message, or "
                                      f"set placement.fallback to one of {FALLBACKS[:-1]}")
        placer = {"lpt": LptPlacer, "static": StaticPlacer, "least_loaded": LeastLoadedPlacer,
                  "sequential": SequentialPlacer}[name]()
        try:
            plan = placer.place(problem)
        except MemoryError as error:
            raise PlacementInfeasible(f"{why}; the fallback {name!r} fails too: {error}") from error
        plan.method, plan.status, plan.fallback, plan.message = self.name, status, name, why
        if report is not None:
            plan.solve_time_s = report.solve_time_s
        return plan


def _phases_of(model, E, w: int, num_phases: int) -> list[list[int]]:
    phases = [[e for e in E if model.x[e, w, f].value > 0.5] for f in range(num_phases)]
    return [phase for phase in phases if phase]


def deal_buckets(problem: PlacementProblem, buckets: list[Bucket], counts: dict,
                 replicas: dict[int, list[int]]) -> list[int]:
    """Prompts of each bucket to workers meeting the ILP's counts, by LPT on their own costs."""
    loads = worker_loads(problem, replicas, [])
    assignment = [-1] * len(problem.prompt_expert)
    for b in sorted(range(len(buckets)), key=lambda b: -buckets[b].cost_s):
        left = {w: counts[b, w] for w in range(len(loads)) if counts[b, w] > 0}
        for p in sorted(buckets[b].prompts, key=lambda p: (-problem.prompt_cost_s[p], p)):
            w = min(left, key=lambda w: (loads[w], w))
            assignment[p] = w
            loads[w] += problem.prompt_cost_s[p]
            left[w] -= 1
            if left[w] == 0:
                del left[w]
    return assignment


def combinatorial_bound(problem: PlacementProblem) -> float:
    """A lower bound on the makespan: no expert finishes faster than its load plus its work over its
    replica cap, no prompt faster than its load plus its cost, and all work shares the workers."""
    work: dict[int, float] = {}
    for p, e in enumerate(problem.prompt_expert):
        work[e] = work.get(e, 0.0) + problem.prompt_cost_s[p]
    load = problem.expert_load_s
    per_expert = max(load[e] + w / problem.max_replicas[e] for e, w in work.items())
    per_prompt = max(load[e] + c for e, c in zip(problem.prompt_expert, problem.prompt_cost_s))
    shared = (sum(load[e] for e in work) + sum(work.values())) / len(problem.workers)
    return max(per_expert, per_prompt, shared)


def _heaviest_expert(problem: PlacementProblem) -> int:
    work: dict[int, float] = {}
    for p, e in enumerate(problem.prompt_expert):
        work[e] = work.get(e, 0.0) + problem.prompt_cost_s[p]
    return max(work, key=lambda e: (work[e], -e))


def _start_plan(problem: PlacementProblem, num_phases: int) -> PlacementPlan | None:
    """The better of LPT's and replica packing's plans that fit in num_phases, with workers relabelled
    so worker 0 holds the heaviest expert (matching the symmetry fix); None if neither fits."""
    plans = [p for p in (_relabelled_plan(problem, lpt_assignment(problem), "lpt", num_phases),
                         _relabelled_plan(problem, replica_pack_assignment(problem), "replica_pack",
                                          num_phases)) if p is not None]
    return min(plans, key=lambda p: p.makespan_s, default=None)


def _relabelled_plan(problem: PlacementProblem, assignment: list[int], method: str,
                     num_phases: int) -> PlacementPlan | None:
    if len(set(problem.worker_memory_bytes)) == 1:
        heavy = _heaviest_expert(problem)
        w0 = next(w for p, w in enumerate(assignment) if problem.prompt_expert[p] == heavy)
        assignment = [{0: w0, w0: 0}.get(w, w) for w in assignment]
    try:
        plan = plan_from_assignment(problem, assignment, method)
    except MemoryError:
        return None
    if any(len(phases) > num_phases for phases in plan.phases.values()):
        return None
    return plan


def _model_makespan(problem: PlacementProblem, buckets, plan: PlacementPlan) -> float:
    """The plan's makespan under the model's costs (bucket means in the bucketed form)."""
    if buckets is None:
        return plan.makespan_s
    mean_cost = {p: bucket.cost_s for bucket in buckets for p in bucket.prompts}
    loads = worker_loads(problem, plan.replicas, [])
    for p, w in enumerate(plan.assignment):
        loads[w] += mean_cost[p]
    return max(loads)


def _mip_start(problem, model, buckets, num_phases: int, plan: PlacementPlan, makespan_s: float
               ) -> list:
    """The plan as a complete MIP start: (variable, value) pairs."""
    E, W = active_experts(problem), range(len(problem.workers))
    assignment = plan.assignment
    start = [(model.r[e, w], float(e in plan.replicas[w])) for e in E for w in W]
    if buckets is None:
        start += [(model.y[p, w], float(assignment[p] == w))
                  for p in range(len(assignment)) for w in W]
    else:
        start += [(model.n[b, w], float(sum(assignment[p] == w for p in bucket.prompts)))
                  for b, bucket in enumerate(buckets) for w in W]
    if num_phases > 1:
        for w in W:
            ordered = sorted(plan.phases[w], key=lambda ph: -sum(problem.expert_memory_bytes[e] for e in ph))
            for f in range(num_phases):
                members = ordered[f] if f < len(ordered) else []
                start += [(model.x[e, w, f], float(e in members)) for e in E]
    if hasattr(model, "z"):
        for e in E:
            count = sum(e in plan.replicas[w] for w in W)
            start += [(model.z[e, k], float(k == count))
                      for k in range(1, problem.max_replicas[e] + 1)]
    start.append((model.T, makespan_s))
    return start


def lp_relaxation_bound(problem: PlacementProblem, num_phases: int, epsilon: float) -> float:
    """The LP relaxation's optimum minus the largest possible replica penalty: a bound on T.

    Fractional assignment only sees each expert's total work per worker, so the per-prompt LP
    equals the LP with one bucket per expert, which is tiny: that is the one solved.
    """
    buckets = make_buckets(problem, num_buckets=1)
    model = build_model(problem, buckets=buckets, num_phases=num_phases, epsilon=epsilon, relax=True,
                        critical_path_cut=True)
    report = solve(model, time_limit_s=60.0, mip_gap=0.0)
    slack = _max_penalty(problem, epsilon)
    return max(0.0, pyo.value(model.makespan_plus_replicas) - slack)


def _max_penalty(problem: PlacementProblem, epsilon: float) -> float:
    """Largest replica + phase penalty any plan can carry: objective bound - this bounds T."""
    return 1.1 * epsilon * sum(problem.max_replicas[e] for e in active_experts(problem))
