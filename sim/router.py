"""Request routers: which worker of a cluster gets an arriving request.

Only workers serving the request's model are candidates (all of them when the request names none).
"""
from __future__ import annotations

from typing import Protocol, Sequence

from tessera.sim.sequence import SeqState
from tessera.sim.worker import Worker


class Router(Protocol):
    name: str
    static: bool  # True: pick() depends only on the order of requests and their candidates, not on worker state

    def pick(self, seq: SeqState, candidates: Sequence[Worker]) -> Worker: ...


class RoundRobinRouter:
    """Cycle through the candidate workers, one counter per candidate set."""

    name = "round_robin"
    static = True  # picks by arrival order alone, never by worker state (Cluster may route every request upfront)

    def __init__(self) -> None:
        self._next: dict[tuple[int, ...], int] = {}
        self._last: tuple[Sequence[Worker], tuple[int, ...]] | None = None  # (candidate list, its key): O(1) repeats

    def pick(self, seq: SeqState, candidates: Sequence[Worker]) -> Worker:
        if self._last is not None and self._last[0] is candidates:  # the cluster passes one list for all workers
            key = self._last[1]
        else:
            key = tuple(w.worker_id for w in candidates)
            self._last = (candidates, key)
        i = self._next.get(key, 0)
        self._next[key] = (i + 1) % len(candidates)
        return candidates[i]


class LeastOutstandingTokensRouter:
    """The worker with the fewest prompt + output tokens of assigned, unfinished requests (ties: lowest id)."""

    name = "least_outstanding_tokens"
    static = False

    def pick(self, seq: SeqState, candidates: Sequence[Worker]) -> Worker:
        return min(candidates, key=lambda w: (w.outstanding_tokens, w.worker_id))


ROUTERS = {cls.name: cls for cls in (RoundRobinRouter, LeastOutstandingTokensRouter)}


def make_router(name: str) -> Router:
    if name not in ROUTERS:
        raise ValueError(f"cluster.router={name!r} is unknown: use one of {sorted(ROUTERS)}")
    return ROUTERS[name]()
