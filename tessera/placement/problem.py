"""The MoA placement problem with the extras the MOSAIC placers use beyond the interface's fields.

MoAPlacementProblem adds expert kinds, request ids and the tensor-parallel costs the `sequential`
baseline needs; check_problem turns a malformed problem into an error naming the field and the fix.
"""
from __future__ import annotations

from dataclasses import dataclass

from tessera.interface import PlacementProblem


@dataclass(frozen=True, slots=True)
class MoAPlacementProblem(PlacementProblem):
    """PlacementProblem + optional MoA context (every extra field may be left empty).

    expert_kinds[e]: "reasoning" | "instruct".
    prompt_ids[p]: the Request id of prompt p.
    prompt_cost_tp_s[p], expert_load_tp_s[e]: p's cost and e's load time when e runs tensor-parallel
        over all workers (the `sequential` baseline); teardown_s: engine teardown after each expert.
    """

    expert_kinds: tuple[str, ...] = ()
    prompt_ids: tuple[int, ...] = ()
    prompt_cost_tp_s: tuple[float, ...] = ()
    expert_load_tp_s: tuple[float, ...] = ()
    teardown_s: float = 0.0


def check_problem(problem: PlacementProblem) -> None:
    """Raise ValueError naming the first inconsistent field of `problem` and how to fix it."""
    num_workers, num_experts = len(problem.workers), len(problem.experts)
    lengths = [("worker_memory_bytes", problem.worker_memory_bytes, num_workers, "workers"),
               ("expert_memory_bytes", problem.expert_memory_bytes, num_experts, "experts"),
               ("expert_load_s", problem.expert_load_s, num_experts, "experts"),
               ("max_replicas", problem.max_replicas, num_experts, "experts"),
               ("prompt_cost_s", problem.prompt_cost_s, len(problem.prompt_expert), "prompt_expert")]
    if num_workers == 0 or num_experts == 0:
        raise ValueError("PlacementProblem needs at least one worker and one expert; "
                         f"got {num_workers} workers, {num_experts} experts")
    for name, values, expected, of in lengths:
        if len(values) != expected:
            raise ValueError(f"PlacementProblem.{name} has {len(values)} entries but there are "
                             f"{expected} {of}; fix: give one value per entry of {of}")
    for name, values in (("worker_memory_bytes", problem.worker_memory_bytes),
                         ("expert_memory_bytes", problem.expert_memory_bytes),
                         ("expert_load_s", problem.expert_load_s),
                         ("prompt_cost_s", problem.prompt_cost_s)):
        if any(v < 0 for v in values):
            raise ValueError(f"PlacementProblem.{name} has a negative value; fix: use >= 0")
    bad = [e for e, cap in enumerate(problem.max_replicas) if not 1 <= cap <= num_workers]
    if bad:
        raise ValueError(f"PlacementProblem.max_replicas[{problem.experts[bad[0]]!r}]="
                         f"{problem.max_replicas[bad[0]]} is invalid: use 1..{num_workers}")
    if any(not 0 <= e < num_experts for e in problem.prompt_expert):
        raise ValueError(f"PlacementProblem.prompt_expert holds an index outside 0..{num_experts - 1}")
    if isinstance(problem, MoAPlacementProblem):
        for name, values, expected in (("expert_kinds", problem.expert_kinds, num_experts),
                                       ("prompt_ids", problem.prompt_ids, len(problem.prompt_expert)),
                                       ("prompt_cost_tp_s", problem.prompt_cost_tp_s,
                                        len(problem.prompt_expert)),
                                       ("expert_load_tp_s", problem.expert_load_tp_s, num_experts)):
            if values and len(values) != expected:
                raise ValueError(f"MoAPlacementProblem.{name} has {len(values)} entries, expected "
                                 f"{expected} (or none)")


def active_experts(problem: PlacementProblem) -> list[int]:
    """Experts with at least one prompt, in index order."""
    return sorted(set(problem.prompt_expert))


def prompts_by_expert(problem: PlacementProblem) -> dict[int, list[int]]:
    groups: dict[int, list[int]] = {e: [] for e in range(len(problem.experts))}
    for p, e in enumerate(problem.prompt_expert):
        groups[e].append(p)
    return groups
