"""Executes one stage of a MoA placement on the worker pool: each worker's residency phases, in order.

Static plans: each worker runs its phases back to back, independently of the others. `barrier`: phase i
starts on every worker when all finished phase i-1 (`sequential`: one expert at a time over all workers).
Queue mode (least_loaded): phases carry replicas only; prompts are pulled from a shared PromptQueue.
A worker that dies: its unfinished prompts go to a surviving worker holding the same expert (a recovery
phase); if none holds it, WorkerLost names the worker and the experts, and the run stops.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from tessera.runtime.moa.prompts import ReplicaSpan, ReplicaSpec, ServedRequest, WorkPrompt
from tessera.runtime.moa.ray_cluster import WorkerPool


class WorkerLost(RuntimeError):
    """A worker died and no survivor holds the experts of its unfinished prompts."""


@dataclass
class Phase:
    replicas: list[ReplicaSpec]
    prompts: list[WorkPrompt] = field(default_factory=list)

    @property
    def experts(self) -> set[str]:
        return {r.expert for r in self.replicas}


@dataclass
class StageProgram:
    """Per worker its phases; barrier: phases aligned across workers; queue: prompts pulled, not pre-assigned."""

    phases: dict[int, list[Phase]]
    barrier: bool = False
    queue: list[WorkPrompt] | None = None
    recorder: Callable | None = None  # wraps each replica's engine to time its steps (profiling stages)


@dataclass
class StageOutcome:
    served: list[ServedRequest]
    spans: list[ReplicaSpan]
    end_s: float
    lost_workers: list[int] = field(default_factory=list)
    redispatched: list[dict] = field(default_factory=list)  # {dead, survivor, expert, prompts}
    steps: list[dict] = field(default_factory=list)  # every engine step, when the program had a recorder


class _Run:
    def __init__(self, pool: WorkerPool, program: StageProgram):
        import ray

        self.ray, self.pool, self.program = ray, pool, program
        self.live = set(program.phases)
        self.served: list[ServedRequest] = []
        self.spans: list[ReplicaSpan] = []
        self.outcome = StageOutcome([], [], 0.0)
        self.queue = None
        if program.queue is not None:
            self.queue = pool.queue
            ray.get(self.queue.reset.remote(program.queue))
        self.t0 = time.time()

    def submit(self, w: int, index: int):
        phase = self.program.phases[w][index]
        return self.pool.actors[w].run_phase.remote(phase.replicas, phase.prompts, self.t0, self.queue,
                                                    self.program.recorder)

    def collect(self, result) -> None:
        self.served.extend(result.served)
        self.spans.extend(result.spans)
        self.outcome.steps.extend(result.steps)

    def lost(self, w: int, index: int) -> list[tuple[int, Phase]]:
        """Worker w died in phase `index`: its unfinished prompts become recovery phases of survivors holding
        the same experts (returned, not yet scheduled). With a barrier, its later phases' prompts join the
        same-index phase of a survivor holding that expert there (every worker holds it in `sequential`)."""
        self.live.discard(w)
        self.outcome.lost_workers.append(w)
        done = {s.request_id for s in self.served}
        later = self.program.phases[w][index + 1:]
        unfinished = [p for p in self.program.phases[w][index].prompts if p.request_id not in done]
        if self.queue is not None:
            unfinished += [p for p in self.ray.get(self.queue.taken_by.remote(w)) if p.request_id not in done]
        if self.program.barrier:
            for j, phase in enumerate(later, start=index + 1):
                for p in phase.prompts:
                    host = next((v for v in sorted(self.live) if j < len(self.program.phases[v])
                                 and p.expert in self.program.phases[v][j].experts), None)
                    if host is None:
                        unfinished.append(p)
                    else:
                        self.program.phases[host][j].prompts.append(p)
        else:
            unfinished += [p for ph in later for p in ph.prompts]
        self.program.phases[w] = self.program.phases[w][:index]
        return self.reassign(w, unfinished)

    def reassign(self, dead: int, prompts: list[WorkPrompt]) -> list[tuple[int, Phase]]:
        by_expert: dict[str, list[WorkPrompt]] = {}
        for p in prompts:
            by_expert.setdefault(p.expert, []).append(p)
        added, orphans = [], []
        for expert, group in sorted(by_expert.items()):
            holders = sorted(v for v in self.live if any(expert in ph.experts for ph in self.program.phases[v]))
            if not holders:
                orphans.append(expert)
                continue
            survivor = holders[0]
            spec = next(r for ph in self.program.phases[survivor] for r in ph.replicas if r.expert == expert)
            added.append((survivor, Phase([spec], group)))
            self.outcome.redispatched.append({"dead": dead, "survivor": survivor, "expert": expert,
                                              "prompts": len(group)})
        if orphans:
            info = self.pool.infos[dead]
            raise WorkerLost(f"worker {dead} (pid {info.get('pid')} on {info.get('host')}) died; no surviving "
                             f"worker holds expert(s) {orphans} for its {len(prompts)} unfinished prompt(s): the "
                             "run stops and nothing is written as complete")
        return added

    def submit_extra(self, w: int, phase: Phase):
        return self.pool.actors[w].run_phase.remote(phase.replicas, phase.prompts, self.t0, self.queue,
                                                    self.program.recorder)


def execute_stage(pool: WorkerPool, program: StageProgram,
                  on_dispatched: Callable[[], None] | None = None) -> StageOutcome:
    """Run every phase of `program`; times of the outcome are seconds since the stage's start."""
    run = _Run(pool, program)
    if program.barrier:
        _barrier_loop(run, on_dispatched)
    else:
        _free_loop(run, on_dispatched)
    if run.queue is not None:
        left = run.ray.get(run.queue.remaining.remote())
        if left:
            raise WorkerLost(f"prompts of expert(s) {sorted(left)} were never served: no live worker held them")
    out = run.outcome
    out.served, out.spans = run.served, run.spans
    out.end_s = max([s.finish_s for s in run.served] + [s.end_s for s in run.spans], default=0.0)
    return out


def _free_loop(run: _Run, on_dispatched) -> None:
    from ray.exceptions import RayActorError

    pending = {}
    for w in sorted(run.live):
        if run.program.phases[w]:
            pending[run.submit(w, 0)] = (w, 0)
    if on_dispatched:
        on_dispatched()
    while pending:
        ready, _ = run.ray.wait(list(pending), num_returns=1)
        w, index = pending.pop(ready[0])
        try:
            run.collect(run.ray.get(ready[0]))
        except RayActorError:
            busy = {v for v, _ in pending.values()}
            for survivor, phase in run.lost(w, index):
                run.program.phases[survivor].append(phase)  # after the survivor's own phases
                if survivor not in busy:  # idle already: start the recovery phase now
                    nxt = len(run.program.phases[survivor]) - 1
                    pending[run.submit(survivor, nxt)] = (survivor, nxt)
                    busy.add(survivor)
            continue
        if index + 1 < len(run.program.phases[w]):
            pending[run.submit(w, index + 1)] = (w, index + 1)


def _barrier_loop(run: _Run, on_dispatched) -> None:
    from ray.exceptions import RayActorError

    index = 0
    while index < max((len(p) for w, p in run.program.phases.items() if w in run.live), default=0):
        pending = {run.submit(w, index): w for w in sorted(run.live) if index < len(run.program.phases[w])}
        if on_dispatched and index == 0:
            on_dispatched()
        while pending:  # this round, then the dead workers' share of it on survivors, before the next round
            recovery = []
            for ref, w in pending.items():
                try:
                    run.collect(run.ray.get(ref))
                except RayActorError:
                    recovery += run.lost(w, index)
            pending = {run.submit_extra(survivor, phase): survivor for survivor, phase in recovery}
        index += 1
