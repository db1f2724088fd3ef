"""A placement plan as the worker pool executes it: per worker its residency phases with replicas and prompts.

Static plans: each phase's prompts are the plan's assignment. least_loaded: the same replicas, prompts pulled
from the shared queue. `sequential` (a tensor-parallel plan): without tensor parallelism on CPU workers, one
expert at a time on every worker, its prompts split round-robin, a barrier between experts. On GPUs the same
plan would be one tensor-parallel group per expert (not built: out of scope here).
"""
from __future__ import annotations

from tessera.placement.plan import PlacementPlan
from tessera.placement.problem import MoAPlacementProblem
from tessera.runtime.moa.executor import Phase, StageProgram
from tessera.runtime.moa.prompts import ReplicaSpec, WorkPrompt

QUEUE_PLACERS = ("least_loaded",)


def stage_program(problem: MoAPlacementProblem, plan: PlacementPlan, prompts: dict[int, WorkPrompt],
                  replicas: dict[str, ReplicaSpec], num_workers: int, use_queue: bool,
                  recorder=None) -> StageProgram:
    """recorder: StageProgram.recorder (every engine step timed, for the stage-step check), or None."""
    if plan.tensor_parallel:
        return _data_parallel(problem, prompts, replicas, num_workers, recorder)
    phases: dict[int, list[Phase]] = {w: [] for w in range(num_workers)}
    mine: dict[tuple[int, int], list[WorkPrompt]] = {}
    for p, w in enumerate(plan.assignment):
        mine.setdefault((w, problem.prompt_expert[p]), []).append(prompts[problem.prompt_ids[p]])
    for w in range(num_workers):
        for phase in plan.phases.get(w, []):
            specs = [replicas[problem.experts[e]] for e in phase]
            assigned = [] if use_queue else [p for e in phase for p in mine.get((w, e), [])]
            phases[w].append(Phase(specs, assigned))
    queue = [prompts[i] for i in problem.prompt_ids] if use_queue else None
    return StageProgram(phases, barrier=False, queue=queue, recorder=recorder)


def _data_parallel(problem, prompts, replicas, num_workers, recorder) -> StageProgram:
    phases: dict[int, list[Phase]] = {w: [] for w in range(num_workers)}
    for e in sorted(set(problem.prompt_expert)):
        ids = [problem.prompt_ids[p] for p, x in enumerate(problem.prompt_expert) if x == e]
        for w in range(num_workers):  # a worker without a share idles through the round (phases stay aligned)
            share = [prompts[i] for i in ids[w::num_workers]]
            phases[w].append(Phase([replicas[problem.experts[e]]] if share else [], share))
    return StageProgram(phases, barrier=True, recorder=recorder)
