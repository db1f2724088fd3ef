"""The MOSAIC ILP (mosaic.md §2.2) as a Pyomo model, in per-prompt or bucketed form, with phases.

Sets: workers W, active experts E, prompts P (or cost buckets B of one expert each), phases F.
Variables: r[e,w] replica of e on w; y[p,w] prompt p on w (bucketed: integer n[b,w] prompts of
bucket b on w); x[e,w,f] that replica resident in phase f (only when |F| > 1); makespan T.
    min  T + epsilon * sum r  (+ epsilon / 10 per replica resident after the first phase)
    each prompt once               sum_w y[p,w] = 1                 (bucketed: sum_w n[b,w] = N_b)
    only where its expert lives    sum_{p of e} y[p,w] <= |P_e| r[e,w]  (bucketed: n[b,w] <= N_b r[e(b),w])
    every active expert placed     sum_w r[e,w] >= 1;  replica cap  sum_w r[e,w] <= R_e
    memory                         sum_e m_e r[e,w] <= M_w          (phases: per (w, f) over x)
    each replica in one phase      sum_f x[e,w,f] = r[e,w]
    worker load within makespan    sum_e lambda_e r[e,w] + sum_p c_p y[p,w] <= T
    expert critical path           lambda_e + work_e / (number of replicas of e) <= T  (optional cut:
                                   tighter LP bound, but slower search on 4 workers; always in the
                                   reported LP bound)
With per-worker phases and additive time a replica is loaded once per worker (loading it twice never
helps), so phases only make memory feasible; they are ordered by memory use to break symmetry.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyomo.environ as pyo

from tessera.interface import PlacementProblem
from tessera.placement.problem import active_experts, prompts_by_expert


@dataclass(frozen=True, slots=True)
class Bucket:
    """Prompts of one expert with (nearly) equal predicted cost; the ILP sees only their count."""

    expert: int
    prompts: tuple[int, ...]
    cost_s: float  # mean predicted cost of its prompts


def make_buckets(problem: PlacementProblem, num_buckets: int) -> list[Bucket]:
    """Per expert, up to num_buckets equal-count groups of prompts sorted by cost (equal costs merge)."""
    buckets = []
    for e, prompts in prompts_by_expert(problem).items():
        if not prompts:
            continue
        ordered = sorted(prompts, key=lambda p: (problem.prompt_cost_s[p], p))
        for chunk in np.array_split(np.array(ordered), min(num_buckets, len(ordered))):
            members = tuple(int(p) for p in chunk)
            cost = float(np.mean([problem.prompt_cost_s[p] for p in members]))
            if buckets and buckets[-1].expert == e and np.isclose(buckets[-1].cost_s, cost):
                merged = buckets[-1].prompts + members
                buckets[-1] = Bucket(e, merged, cost)
            else:
                buckets.append(Bucket(e, members, cost))
    return buckets


def build_model(problem: PlacementProblem, *, buckets: list[Bucket] | None = None,
                num_phases: int = 1, epsilon: float = 1e-3, relax: bool = False,
                makespan_cap_s: float | None = None,
                critical_path_cut: bool = False) -> pyo.ConcreteModel:
    """The ILP; per-prompt form when buckets is None. relax=True builds the LP relaxation.

    makespan_cap_s: the makespan of a known feasible plan (the warm start). Only plans at least as
    good are kept, which allows the cut "e has enough replicas that each does at most
    cap - lambda_e of work" (it lifts the LP bound a lot when reasoning experts must replicate).
    """
    m = pyo.ConcreteModel("mosaic")
    W = list(range(len(problem.workers)))
    E = active_experts(problem)
    F = list(range(num_phases))
    binary = pyo.UnitInterval if relax else pyo.Binary
    m.r = pyo.Var(E, W, domain=binary)
    m.T = pyo.Var(domain=pyo.NonNegativeReals)

    @m.Constraint(E)
    def every_active_expert_placed(m, e):
        return sum(m.r[e, w] for w in W) >= 1

    @m.Constraint(E)
    def replica_cap(m, e):
        return sum(m.r[e, w] for w in W) <= problem.max_replicas[e]

    if makespan_cap_s is not None:
        m.T.setub(makespan_cap_s)
        work_of = {e: 0.0 for e in E}
        for p, e in enumerate(problem.prompt_expert):
            work_of[e] += problem.prompt_cost_s[p]

        @m.Constraint(E)
        def enough_replicas_under_cap(m, e):
            room = makespan_cap_s - problem.expert_load_s[e]
            needed = np.ceil(work_of[e] / room - 1e-9) if room > 0 else 1
            return sum(m.r[e, w] for w in W) >= min(max(needed, 1), problem.max_replicas[e])

    if critical_path_cut:
        _add_replica_count_bound(m, problem, E, W, binary)
    _add_memory(m, problem, E, W, F, binary)
    work = _add_assignment(m, problem, E, W, buckets, relax)

    @m.Constraint(W)
    def worker_load_within_makespan(m, w):
        loads = sum(problem.expert_load_s[e] * m.r[e, w] for e in E)
        return loads + work[w] <= m.T

    penalty = epsilon * sum(m.r[e, w] for e in E for w in W)
    if num_phases > 1:  # prefer the first phase: a plan that fits at once stays co-resident
        penalty += epsilon / 10 * sum(m.x[e, w, f] for e in E for w in W for f in F[1:])
    m.makespan_plus_replicas = pyo.Objective(expr=m.T + penalty, sense=pyo.minimize)
    return m


def _add_replica_count_bound(m, problem: PlacementProblem, E, W, binary) -> None:
    """T >= lambda_e + work_e / k when e has k replicas (some replica does >= 1/k of e's work).

    Linearised with a one-hot count z[e,k]; implied by the integer model, but it lifts the LP bound
    from total-work averaging to the per-expert critical path, which is what decides many workers.
    """
    work_of = {e: 0.0 for e in E}
    for p, e in enumerate(problem.prompt_expert):
        work_of[e] += problem.prompt_cost_s[p]
    counts = [(e, k) for e in E for k in range(1, problem.max_replicas[e] + 1)]
    m.z = pyo.Var(counts, domain=binary)

    @m.Constraint(E)
    def one_replica_count(m, e):
        return sum(m.z[e, k] for k in range(1, problem.max_replicas[e] + 1)) == 1

    @m.Constraint(E)
    def replica_count_matches(m, e):
        return (sum(k * m.z[e, k] for k in range(1, problem.max_replicas[e] + 1))
                == sum(m.r[e, w] for w in W))

    @m.Constraint(E)
    def expert_critical_path(m, e):
        share = sum(work_of[e] / k * m.z[e, k] for k in range(1, problem.max_replicas[e] + 1))
        return problem.expert_load_s[e] + share <= m.T


def _add_memory(m, problem: PlacementProblem, E, W, F, binary) -> None:
    mem, cap = problem.expert_memory_bytes, problem.worker_memory_bytes
    scale = max(cap)  # bytes are ~1e10: scale rows to O(1) for the solver's tolerances
    if len(F) == 1:
        @m.Constraint(W)
        def memory_fits(m, w):
            return sum(mem[e] / scale * m.r[e, w] for e in E) <= cap[w] / scale
        return
    m.x = pyo.Var(E, W, F, domain=binary)

    @m.Constraint(E, W)
    def each_replica_in_one_phase(m, e, w):
        return sum(m.x[e, w, f] for f in F) == m.r[e, w]

    @m.Constraint(W, F)
    def memory_fits_per_phase(m, w, f):
        return sum(mem[e] / scale * m.x[e, w, f] for e in E) <= cap[w] / scale

    @m.Constraint(W, F[:-1])
    def phases_ordered_by_memory(m, w, f):
        return (sum(mem[e] / scale * m.x[e, w, f] for e in E)
                >= sum(mem[e] / scale * m.x[e, w, f + 1] for e in E))


def _add_assignment(m, problem: PlacementProblem, E, W, buckets, relax) -> dict:
    """Adds assignment variables and constraints; returns each worker's prompt-work expression."""
    if buckets is None:
        P = range(len(problem.prompt_expert))
        m.y = pyo.Var(P, W, domain=pyo.UnitInterval if relax else pyo.Binary)

        @m.Constraint(P)
        def each_prompt_once(m, p):
            return sum(m.y[p, w] for w in W) == 1

        members = {e: [p for p in P if problem.prompt_expert[p] == e] for e in E}

        # Aggregated over the expert's prompts: |E|*|W| rows instead of |P|*|W| (presolve of the
        # disaggregated form alone took > 10 s at 6,300 prompts); weaker LP, same integer optimum.
        @m.Constraint(E, W)
        def runs_where_expert_lives(m, e, w):
            return sum(m.y[p, w] for p in members[e]) <= len(members[e]) * m.r[e, w]

        cost = problem.prompt_cost_s
        return {w: sum(cost[p] * m.y[p, w] for p in P) for w in W}

    B = range(len(buckets))
    m.n = pyo.Var(B, W, domain=pyo.NonNegativeReals if relax else pyo.NonNegativeIntegers,
                  bounds=lambda m, b, w: (0, len(buckets[b].prompts)))

    @m.Constraint(B)
    def each_bucket_split(m, b):
        return sum(m.n[b, w] for w in W) == len(buckets[b].prompts)

    @m.Constraint(B, W)
    def runs_where_expert_lives(m, b, w):
        return m.n[b, w] <= len(buckets[b].prompts) * m.r[buckets[b].expert, w]

    return {w: sum(buckets[b].cost_s * m.n[b, w] for b in B) for w in W}
