"""PlacementPlan: a PlacementResult with residency phases, solver report and fallback, plus checks.

A worker runs its phases one after another; in each phase the listed experts are co-resident (each
loaded once, at the phase start) and serve the prompts assigned to them on that worker. Time is
additive per worker (processor sharing): load times + profiled prompt costs.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from tessera.interface import PlacementProblem, PlacementResult

GB = 1e9


@dataclass(slots=True)
class PlacementPlan(PlacementResult):
    """PlacementResult + how each worker sequences its replicas and how the plan was obtained.

    phases[w]: worker w's residency phases in run order, each a list of expert indices (every
        replica on w appears in exactly one phase); a single phase means all co-resident.
    tensor_parallel: all workers act as one tensor-parallel group (the `sequential` baseline;
        assignment then names worker 0 for every prompt and replicas list every expert on all).
    worker_load_s[w]: load times + prompt costs on w, the quantity whose max is makespan_s.
    gap: relative MIP gap of the ILP's own objective at exit; lp_bound_s: LP-relaxation bound on T.
    fallback: name of the placer whose plan was returned instead of the ILP's (None: the ILP's).
    message: why (infeasibility diagnosis, timeout without incumbent, ...).
    """

    phases: dict[int, list[list[int]]] = field(default_factory=dict)
    tensor_parallel: bool = False
    worker_load_s: list[float] = field(default_factory=list)
    gap: float | None = None
    lp_bound_s: float | None = None
    fallback: str | None = None
    message: str = ""

    @property
    def num_replicas(self) -> int:
        return sum(len(experts) for experts in self.replicas.values())

    def phase_of(self, worker: int, expert: int) -> int:
        """Index of the phase in which `expert` is resident on `worker`."""
        for index, experts in enumerate(self.phases.get(worker, [])):
            if expert in experts:
                return index
        raise KeyError(f"expert {expert} has no replica on worker {worker}")


def worker_loads(problem: PlacementProblem, replicas: dict[int, list[int]],
                 assignment: list[int]) -> list[float]:
    """Per worker: load time of its replicas + profiled costs of its prompts."""
    loads = [sum(problem.expert_load_s[e] for e in replicas.get(w, []))
             for w in range(len(problem.workers))]
    for p, w in enumerate(assignment):
        loads[w] += problem.prompt_cost_s[p]
    return loads


def split_into_phases(problem: PlacementProblem, worker: int, experts: list[int]) -> list[list[int]]:
    """First-fit decreasing of a worker's replicas into memory-feasible phases.

    Raises MemoryError naming the expert, the worker and the shortfall if one replica alone does
    not fit.
    """
    capacity = problem.worker_memory_bytes[worker]
    phases: list[list[int]] = []
    used: list[float] = []
    for e in sorted(experts, key=lambda e: (-problem.expert_memory_bytes[e], e)):
        need = problem.expert_memory_bytes[e]
        if need > capacity:
            raise MemoryError(memory_shortfall_message(problem, e, worker))
        for index in range(len(phases)):
            if used[index] + need <= capacity:
                phases[index].append(e)
                used[index] += need
                break
        else:
            phases.append([e])
            used.append(need)
    return [sorted(phase) for phase in phases]


def memory_shortfall_message(problem: PlacementProblem, expert: int, worker: int) -> str:
    need = problem.expert_memory_bytes[expert]
    have = problem.worker_memory_bytes[worker]
    return (f"expert {problem.experts[expert]!r} needs {need / GB:.1f} GB per replica (weights + KV "
            f"reservation) but worker {problem.workers[worker]!r} has {have / GB:.1f} GB usable: "
            f"short by {(need - have) / GB:.1f} GB; fix: a larger GPU, a smaller KV reservation "
            f"(placement batch_size) or tensor parallelism for this expert")


def plan_from_assignment(problem: PlacementProblem, assignment: list[int], method: str,
                         replicas: dict[int, list[int]] | None = None, **report) -> PlacementPlan:
    """A PlacementPlan whose replicas are the experts each worker serves (plus any given ones),
    split into memory-feasible phases, with loads and makespan evaluated."""
    served: dict[int, set[int]] = {w: set((replicas or {}).get(w, [])) for w in range(len(problem.workers))}
    for p, w in enumerate(assignment):
        served[w].add(problem.prompt_expert[p])
    replica_lists = {w: sorted(es) for w, es in served.items()}
    phases = {w: split_into_phases(problem, w, es) for w, es in replica_lists.items()}
    loads = worker_loads(problem, replica_lists, assignment)
    return PlacementPlan(replica_lists, list(assignment), max(loads, default=0.0), method,
                         phases=phases, worker_load_s=loads, **report)


def check_plan(problem: PlacementProblem, plan: PlacementPlan) -> list[str]:
    """Violations of the plan's contract (empty list: valid). Used by tests and callers' asserts."""
    errors = []
    if len(plan.assignment) != len(problem.prompt_expert):
        errors.append(f"{len(plan.assignment)} assignments for {len(problem.prompt_expert)} prompts")
    for p, w in enumerate(plan.assignment):
        e = problem.prompt_expert[p]
        if not plan.tensor_parallel and e not in plan.replicas.get(w, []):
            errors.append(f"prompt {p} on worker {w} without a replica of expert {e}")
    for w, phases in plan.phases.items():
        flat = sorted(e for phase in phases for e in phase)
        if flat != sorted(plan.replicas.get(w, [])):
            errors.append(f"worker {w}: phases {phases} do not match replicas {plan.replicas.get(w)}")
        for index, phase in enumerate(phases):
            used = sum(problem.expert_memory_bytes[e] for e in phase)
            if used > problem.worker_memory_bytes[w] * (1 + 1e-9):
                errors.append(f"worker {w} phase {index}: {used / GB:.1f} GB > "
                              f"{problem.worker_memory_bytes[w] / GB:.1f} GB")
    for e in set(problem.prompt_expert):
        count = sum(e in es for es in plan.replicas.values())
        if not plan.tensor_parallel and count > problem.max_replicas[e]:
            errors.append(f"expert {e} has {count} replicas > cap {problem.max_replicas[e]}")
    return errors
