"""How many residency phases the ILP needs when the active experts cannot all be resident at once.

First-fit decreasing of one replica per active expert into (worker, phase) bins gives the fewest
phases (the ILP gets one more); an expert larger than every worker, or needing more than max_phases, is a MemoryShortage
whose message names the expert or the totals and the shortfall.
"""
from __future__ import annotations

from tessera.interface import PlacementProblem
from tessera.placement.plan import GB, memory_shortfall_message
from tessera.placement.problem import active_experts


class MemoryShortage(MemoryError):
    """The active experts cannot be placed within the workers' memory and the phase limit."""


def phases_needed(problem: PlacementProblem) -> int:
    """Fewest phases in which one replica of every active expert fits (first-fit decreasing)."""
    experts = active_experts(problem)
    biggest = max(range(len(problem.workers)), key=lambda w: problem.worker_memory_bytes[w])
    for e in experts:
        if problem.expert_memory_bytes[e] > problem.worker_memory_bytes[biggest]:
            raise MemoryShortage(memory_shortfall_message(problem, e, biggest))
    num_phases = 1
    while not _packs(problem, experts, num_phases):
        num_phases += 1
    return num_phases


def _packs(problem: PlacementProblem, experts: list[int], num_phases: int) -> bool:
    free = [cap for cap in problem.worker_memory_bytes for _ in range(num_phases)]
    for e in sorted(experts, key=lambda e: -problem.expert_memory_bytes[e]):
        need = problem.expert_memory_bytes[e]
        slot = next((i for i, room in enumerate(free) if room >= need), None)
        if slot is None:
            return False
        free[slot] -= need
    return True


def choose_num_phases(problem: PlacementProblem, requested: int | None, max_phases: int) -> int:
    """requested if given (checked), else phases_needed + 1 (capped at max_phases).

    The extra phase is room for replicas beyond what fits at once; the ILP charges a tiny penalty
    for residency outside the first phase, so a plan that fits at once stays in one phase.
    """
    needed = phases_needed(problem)
    if needed > (requested or max_phases):
        limit = requested or max_phases
        total = sum(problem.expert_memory_bytes[e] for e in active_experts(problem))
        room = sum(problem.worker_memory_bytes) * limit
        raise MemoryShortage(
            f"the {len(active_experts(problem))} active experts need {needed} residency phases "
            f"({total / GB:.1f} GB of replicas; {len(problem.workers)} workers x {limit} phase(s) "
            f"give {room / GB:.1f} GB, short by {max(0.0, total - room) / GB:.1f} GB after packing); "
            f"fix: raise placement.max_phases (or num_phases) to >= {needed}")
    if requested is not None:
        return requested
    return min(needed + 1, max_phases)
