"""A simulated cluster: workers (each a model on its GPUs), the host links, and the arrival process.

`Cluster.run(requests)` replays a workload through the router and returns every request's final state.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import simpy
from tqdm.auto import tqdm

from tessera.interface import CostModel
from tessera.memory import MemoryConfig, num_kv_blocks
from tessera.scheduling import FCFSScheduler, SchedulerConfig
from tessera.types import LinkSpec, Request, WorkerSpec
from tessera.sim.gpu import GPU
from tessera.sim.link import Link
from tessera.sim.router import Router
from tessera.sim.sequence import SeqState
from tessera.sim.worker import Worker


@dataclass(slots=True)
class ClusterRun:
    """What a simulation returns: final request states, the workers (for their counters) and the end time."""

    seqs: list[SeqState]
    workers: list[Worker]
    end_s: float


class Cluster:
    def __init__(self, worker_specs: Sequence[WorkerSpec], cost_for: Callable[[WorkerSpec], CostModel],
                 scheduler_config: SchedulerConfig, memory: MemoryConfig, router: Router,
                 host_link: LinkSpec | None = None, progress: bool = False, fast_forward: bool = True) -> None:
        if not worker_specs:
            raise ValueError("cluster has no workers: set cluster.num_workers >= 1")
        self.env = simpy.Environment()
        self.router = router
        self.progress = progress
        self.gpus: list[GPU] = []
        self.links: list[Link] = []
        self.workers: list[Worker] = []
        self._finished: list[SeqState] = []
        self._expected = 0
        self._all_done = self.env.event()
        self._bar = None
        for spec in worker_specs:
            gpus = [GPU(len(self.gpus) + i, spec.gpu) for i in range(spec.tp)]
            for gpu in gpus:
                gpu.reserve(f"{spec.model.name} weights (worker {spec.worker_id})", spec.model.weight_bytes / spec.tp)
            self.gpus.extend(gpus)
            if host_link is not None:
                self.links.extend(Link(self.env, host_link) for _ in gpus)
            blocks = num_kv_blocks(spec.model, spec.gpu, spec.tp, memory, scheduler_config.block_size)
            self.workers.append(Worker(self.env, spec, cost_for(spec), FCFSScheduler(scheduler_config),
                                       blocks, scheduler_config.block_size, scheduler_config.watermark,
                                       self._on_finish, fast_forward))

    def _on_finish(self, seq: SeqState) -> None:
        self._finished.append(seq)
        if self._bar is not None:
            self._bar.update(1)
        if len(self._finished) == self._expected:
            self._all_done.succeed()

    def _candidates(self, request: Request) -> list[Worker]:
        if request.model is None:
            return self.workers
        found = [w for w in self.workers if w.spec.model.name == request.model]
        if not found:
            served = sorted({w.spec.model.name for w in self.workers})
            raise ValueError(f"request {request.request_id} asks for model {request.model!r} but the cluster "
                             f"serves only {served}; fix the workload's model names or the cluster's models")
        return found

    def _arrivals(self, seqs: list[SeqState]):
        env = self.env
        for seq in seqs:
            delay = seq.request.arrival_s - env.now
            if delay > 0:
                yield env.timeout(delay)
            seq.arrival_s = env.now
            self.router.pick(seq, self._candidates(seq.request)).add(seq)

    def run(self, requests: Sequence[Request]) -> ClusterRun:
        seqs = [SeqState(r) for r in sorted(requests, key=lambda r: (r.arrival_s, r.request_id))]
        if seqs and seqs[0].request.arrival_s < 0:
            raise ValueError(f"request {seqs[0].request_id} arrives at {seqs[0].request.arrival_s} s: "
                             "arrival times must be >= 0")
        self._bar = tqdm(total=len(seqs), desc="simulating", unit="req", disable=not self.progress,
                         mininterval=0.5)
        self._expected = len(seqs)
        if seqs:
            self.env.process(self._arrivals(seqs))
            try:
                self.env.run(until=self._all_done)
            except RuntimeError as err:  # SimPy: no events left before every request finished
                stuck = [q for q in seqs if q.status not in ("finished",) and not q.status.startswith("rejected")]
                raise RuntimeError(f"simulation stalled with {len(stuck)} unfinished requests, "
                                   f"e.g. {stuck[:3]}") from err
        self._bar.close()
        end = max((s.finish_s for s in seqs if s.finish_s == s.finish_s), default=0.0)
        return ClusterRun(seqs=seqs, workers=self.workers, end_s=end)
