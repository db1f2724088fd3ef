"""The MoA placement problem with the extras the MOSAIC placers use beyond the interface's fields.

MoAPlacementProblem adds expert kinds, request ids and the tensor-parallel costs the `sequential`
baseline needs; check_problem turns a malformed problem into a PlacementInputError naming the field and the fix.
"""
from __future__ import annotations

import math
import numbers
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


class PlacementInputError(ValueError):
    """A placement problem (or its inputs) no placer can use; the message names the field and the fix."""


def _index_of_bad(values, ok) -> int | None:
    return next((i for i, v in enumerate(values) if not ok(v)), None)


def is_finite_real(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def is_whole_number(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def check_problem(problem: PlacementProblem) -> None:
    """Raise PlacementInputError naming the first inconsistent field of `problem` and how to fix it."""
    num_workers, num_experts = len(problem.workers), len(problem.experts)
    lengths = [("worker_memory_bytes", problem.worker_memory_bytes, num_workers, "workers"),
               ("expert_memory_bytes", problem.expert_memory_bytes, num_experts, "experts"),
               ("expert_load_s", problem.expert_load_s, num_experts, "experts"),
               ("max_replicas", problem.max_replicas, num_experts, "experts"),
               ("prompt_cost_s", problem.prompt_cost_s, len(problem.prompt_expert), "prompt_expert")]
    if num_workers == 0 or num_experts == 0:
        raise PlacementInputError(
            f"PlacementProblem needs at least one worker and one expert; got {num_workers} workers, "
            f"{num_experts} experts; fix: cluster.num_workers >= 1, and a workload whose requests name experts")
    if len(problem.prompt_expert) == 0:
        raise PlacementInputError("PlacementProblem has no prompts (prompt_expert is empty): there is nothing "
                                  "to place; fix: give the placer a workload with at least one request")
    for name, values, expected, of in lengths:
        if len(values) != expected:
            raise PlacementInputError(f"PlacementProblem.{name} has {len(values)} entries but there are "
                                      f"{expected} {of}; fix: give one value per entry of {of}")
    for name, values in (("worker_memory_bytes", problem.worker_memory_bytes),
                         ("expert_memory_bytes", problem.expert_memory_bytes),
                         ("expert_load_s", problem.expert_load_s),
                         ("prompt_cost_s", problem.prompt_cost_s)):
        i = _index_of_bad(values, lambda v: is_finite_real(v) and v >= 0)
        if i is not None:
            raise PlacementInputError(
                f"PlacementProblem.{name}[{i}]={values[i]!r} is invalid: use a finite number >= 0 (NaN, inf "
                "or negative costs and sizes make every plan meaningless); fix the profile that produced it")
    i = _index_of_bad(problem.worker_memory_bytes, lambda v: v > 0)
    if i is not None:
        raise PlacementInputError(f"PlacementProblem.worker_memory_bytes[{i}] is 0: worker {problem.workers[i]!r} "
                                  "can hold no replica; fix: give every worker its usable memory in bytes (> 0)")
    bad = [e for e, cap in enumerate(problem.max_replicas) if not (is_whole_number(cap) and 1 <= cap <= num_workers)]
    if bad:
        raise PlacementInputError(
            f"PlacementProblem.max_replicas[{problem.experts[bad[0]]!r}]={problem.max_replicas[bad[0]]!r} is "
            f"invalid: use a whole number in 1..{num_workers} (at most one replica per worker)")
    i = _index_of_bad(problem.prompt_expert, lambda e: is_whole_number(e) and 0 <= e < num_experts)
    if i is not None:
        raise PlacementInputError(f"PlacementProblem.prompt_expert[{i}]={problem.prompt_expert[i]!r} is not an "
                                  f"expert index in 0..{num_experts - 1}; fix: map each prompt to one of the experts")
    if isinstance(problem, MoAPlacementProblem):
        for name, values, expected in (("expert_kinds", problem.expert_kinds, num_experts),
                                       ("prompt_ids", problem.prompt_ids, len(problem.prompt_expert)),
                                       ("prompt_cost_tp_s", problem.prompt_cost_tp_s,
                                        len(problem.prompt_expert)),
                                       ("expert_load_tp_s", problem.expert_load_tp_s, num_experts)):
            if values and len(values) != expected:
                raise PlacementInputError(f"MoAPlacementProblem.{name} has {len(values)} entries, expected "
                                          f"{expected} (or none)")
        for name, values in (("prompt_cost_tp_s", problem.prompt_cost_tp_s),
                             ("expert_load_tp_s", problem.expert_load_tp_s),
                             ("teardown_s", (problem.teardown_s,))):
            i = _index_of_bad(values, lambda v: is_finite_real(v) and v >= 0)
            if i is not None:
                raise PlacementInputError(f"MoAPlacementProblem.{name}={values[i]!r} (entry {i}) is invalid: "
                                          "use a finite number of seconds >= 0")


def active_experts(problem: PlacementProblem) -> list[int]:
    """Experts with at least one prompt, in index order."""
    return sorted(set(problem.prompt_expert))


def prompts_by_expert(problem: PlacementProblem) -> dict[int, list[int]]:
    groups: dict[int, list[int]] = {e: [] for e in range(len(problem.experts))}
    for p, e in enumerate(problem.prompt_expert):
        groups[e].append(p)
    return groups
