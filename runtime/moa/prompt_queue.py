"""PromptQueue: the shared queue `least_loaded` dispatches from (a Ray actor; plain class for tests).

Per expert a FIFO of prompts; a worker takes up to n of each expert it holds when its replicas have room.
Who took what is kept, so a dead worker's unfinished prompts can be put back for a survivor.
"""
from __future__ import annotations

from collections import deque

from tessera.runtime.moa.prompts import WorkPrompt


class PromptQueue:
    def __init__(self, prompts: list[WorkPrompt] | None = None) -> None:
        self.reset(prompts or [])

    def reset(self, prompts: list[WorkPrompt]) -> None:
        """A new stage: these prompts, nothing taken (one queue actor serves every stage of a run)."""
        self.fifo: dict[str, deque[WorkPrompt]] = {}
        self.taken: dict[int, list[WorkPrompt]] = {}
        self.put(prompts)

    def put(self, prompts: list[WorkPrompt]) -> None:
        for p in prompts:
            self.fifo.setdefault(p.expert, deque()).append(p)

    def take(self, worker: int, wants: dict[str, int]) -> list[WorkPrompt]:
        got = []
        for expert, n in wants.items():
            fifo = self.fifo.get(expert)
            while fifo and n > 0:
                got.append(fifo.popleft())
                n -= 1
        self.taken.setdefault(worker, []).extend(got)
        return got

    def taken_by(self, worker: int) -> list[WorkPrompt]:
        return list(self.taken.get(worker, []))

    def remaining(self) -> dict[str, int]:
        return {e: len(f) for e, f in self.fifo.items() if f}
