"""Replica packing: a makespan heuristic for many identical workers, used as an extra ILP warm start.

For a target makespan T every expert gets the fewest replicas that keep load + work/replicas <= T;
the replicas are packed first-fit-decreasing onto workers (one replica of an expert per worker), and
T is bisected down to the smallest that packs. Prompts are then dealt to each expert's replicas by LPT.
LPT decides replicas prompt by prompt and opens too few of them when workers are many; this does not.
"""
from __future__ import annotations

import math

from tessera.interface import PlacementProblem
from tessera.placement.problem import prompts_by_expert


def _replica_counts(work: dict[int, float], load: dict[int, float], caps: dict[int, int],
                    target_s: float) -> dict[int, int] | None:
    counts = {}
    for e, w in work.items():
        if target_s <= load[e]:
            return None
        counts[e] = max(1, math.ceil(w / (target_s - load[e]) - 1e-12))
        if counts[e] > caps[e]:
            return None
    return counts


def _pack(counts: dict[int, int], work: dict[int, float], load: dict[int, float], num_workers: int,
          target_s: float) -> dict[int, list[int]] | None:
    """expert -> its replicas' workers, first-fit decreasing by replica size; None if it does not fit."""
    items = sorted(((load[e] + work[e] / n, e) for e, n in counts.items() for _ in range(n)),
                   key=lambda item: (-item[0], item[1]))
    used = [0.0] * num_workers
    holders: dict[int, list[int]] = {e: [] for e in counts}
    for size, e in items:
        # least-loaded worker without a replica of e keeps the bins level (worst-fit) and packs tighter here
        candidates = [w for w in range(num_workers)
                      if w not in holders[e] and used[w] + size <= target_s * (1 + 1e-9)]
        if not candidates:
            return None
        w = min(candidates, key=lambda w: (used[w], w))
        used[w] += size
        holders[e].append(w)
    return holders


def replica_pack_assignment(problem: PlacementProblem, iterations: int = 40) -> list[int]:
    """prompt -> worker (deterministic)."""
    num_workers = len(problem.workers)
    groups = {e: ps for e, ps in prompts_by_expert(problem).items() if ps}
    work = {e: sum(problem.prompt_cost_s[p] for p in ps) for e, ps in groups.items()}
    load = {e: problem.expert_load_s[e] for e in groups}
    caps = {e: problem.max_replicas[e] for e in groups}
    lower = max(max(load[e] + work[e] / caps[e] for e in groups),
                (sum(load.values()) + sum(work.values())) / num_workers)
    upper = sum(load.values()) + sum(work.values())  # one replica each, all on one worker: always packs
    best = _pack({e: 1 for e in groups}, work, load, num_workers, upper)
    for _ in range(iterations):
        if upper - lower <= 1e-4 * upper:
            break
        target = (lower + upper) / 2
        counts = _replica_counts(work, load, caps, target)
        holders = None if counts is None else _pack(counts, work, load, num_workers, target)
        if holders is None:
            lower = target
        else:
            upper, best = target, holders
    return _deal(problem, groups, best)


def _deal(problem: PlacementProblem, groups: dict[int, list[int]], holders: dict[int, list[int]]) -> list[int]:
    """Each expert's prompts, largest first, to the least-loaded of its replica workers."""
    loads = [0.0] * len(problem.workers)
    for e, ws in holders.items():
        for w in ws:
            loads[w] += problem.expert_load_s[e]
    assignment = [0] * len(problem.prompt_expert)
    for e in sorted(groups, key=lambda e: -sum(problem.prompt_cost_s[p] for p in groups[e])):
        for p in sorted(groups[e], key=lambda p: (-problem.prompt_cost_s[p], p)):
            w = min(holders[e], key=lambda w: (loads[w], w))
            loads[w] += problem.prompt_cost_s[p]
            assignment[p] = w
    return assignment
