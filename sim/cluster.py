"""A simulated cluster: workers (each a model replica on its GPUs), the GPUs they share, host links and arrivals.

`Cluster.run(requests)` replays a workload (through the router, or an explicit assignment) and returns
every request's final state; callbacks may submit new requests while it runs (multi-stage pipelines).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from operator import attrgetter
from typing import Callable, Mapping, Sequence

import simpy
from tqdm.std import tqdm  # not tqdm.auto: it imports asyncio and ssl (~80 ms of start-up)

from tessera.cost.pipeline import stage_model
from tessera.interface import CostModel
from tessera.memory import MemoryConfig, kv_budget_bytes_per_gpu, kv_bytes_per_token_per_gpu
from tessera.scheduling import SchedulerConfig, make_scheduler
from tessera.types import LinkSpec, Request, WorkerSpec
from tessera.sim.admission import check_requests
from tessera.sim.gpu import GPU
from tessera.sim.kv_manager import KVManager
from tessera.sim.kv_setup import KVSetup, truth_head_model
from tessera.sim.link import Link
from tessera.sim.router import Router
from tessera.sim.sequence import SeqState
from tessera.sim.timeouts import timeout_at
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
                 host_link: LinkSpec | None = None, progress: bool = False, fast_forward: bool = True,
                 kv: KVSetup | None = None, decode_cohort: bool = True, independent_workers: bool = True) -> None:
        """kv: the KV policy every worker runs (None: plain full KV in token blocks, the fast path).
        fast_forward=False: one event per iteration; decode_cohort=False: no lazy decode counters (sim/worker.py);
        independent_workers=False: every worker in one SimPy environment even when nothing couples them (run());
        all give the same results (the references the fast paths are tested against)."""
        if not worker_specs:
            raise ValueError("cluster has no workers: set cluster.num_workers >= 1")
        self.env = simpy.Environment()
        self.router = router
        self.progress = progress
        self.independent_workers = independent_workers
        self.memory = memory
        self.block_size = scheduler_config.block_size
        self.gpus: dict[int, GPU] = {}
        self.links: dict[int, Link] = {}
        self.workers: list[Worker] = []
        self._host_link = host_link
        self._seqs: list[SeqState] = []
        self._finished = 0
        self._expected = 0
        self._all_done = self.env.event()
        self._user_on_finish: Callable[[SeqState, "Cluster"], None] | None = None
        self._bar = None
        placed = [self._place(spec) for spec in worker_specs]
        residents: dict[int, int] = {}
        for gpus in placed:
            for gpu in gpus:
                residents[gpu.gpu_id] = residents.get(gpu.gpu_id, 0) + 1
        for spec, gpus in zip(worker_specs, placed):
            shared = any(residents[g.gpu_id] > 1 for g in gpus)
            lanes = [g.compute for g in sorted(gpus, key=lambda g: g.gpu_id)] if shared else None
            manager = self._kv_manager(spec, gpus, kv) if kv is not None else None
            self.workers.append(Worker(self.env, spec, cost_for(spec), make_scheduler(scheduler_config),
                                       self._kv_blocks(spec), self.block_size, scheduler_config.watermark,
                                       self._on_finish, fast_forward and not shared, compute_lanes=lanes,
                                       kv=manager, decode_cohort=decode_cohort))
        self._by_id = {w.worker_id: w for w in self.workers}
        if len(self._by_id) != len(self.workers):
            raise ValueError("worker ids must be unique across the cluster's worker specs")

    # ------------------------------------------------------------------------------------- building
    def _gpu(self, gpu_id: int, spec) -> GPU:
        if gpu_id not in self.gpus:
            self.gpus[gpu_id] = GPU(self.env, gpu_id, spec, usable_fraction=self.memory.gpu_memory_utilization)
            if self._host_link is not None:
                self.links[gpu_id] = Link(self.env, self._host_link)
        elif self.gpus[gpu_id].spec != spec:
            raise ValueError(f"GPU {gpu_id} is a {self.gpus[gpu_id].spec.name} but a worker spec says {spec.name}")
        return self.gpus[gpu_id]

    def _place(self, spec: WorkerSpec) -> list[GPU]:
        if spec.gpu_ids is None:
            first = max(self.gpus, default=-1) + 1
            ids = tuple(range(first, first + spec.tp * spec.pp))
        else:
            ids = spec.gpu_ids
            if len(ids) != spec.tp * spec.pp or len(set(ids)) != len(ids):
                raise ValueError(f"worker {spec.worker_id}: gpu_ids {ids} must name tp x pp={spec.tp * spec.pp} "
                                 "distinct GPUs")
        gpus = [self._gpu(i, spec.gpu) for i in ids]
        tag = f"{spec.model.name} (worker {spec.worker_id})"
        kv_bytes = self._kv_bytes_per_gpu(spec)
        for gpu in gpus:  # with pp stages, every GPU holds (at most) the largest stage's share
            gpu.reserve(f"{tag} weights", stage_model(spec.model, spec.pp).weight_bytes / spec.tp)
            gpu.reserve(f"{tag} activations", self.memory.activation_reserve_gib * 2**30)
            gpu.reserve(f"{tag} KV cache", max(kv_bytes, 0.0))
        return gpus

    def _kv_manager(self, spec: WorkerSpec, gpus: list[GPU], kv: KVSetup) -> KVManager:
        """A worker's KV manager: its policy, the model's head behaviour and its first GPU's host link."""
        kv_heads = spec.model.num_kv_heads
        if spec.pp > 1:
            raise ValueError(f"worker {spec.worker_id}: KV policies are simulated without pipeline stages; use "
                             "kvpolicy=full with cluster.pp > 1, or cluster.pp=1")
        if spec.tp > 1 and kv_heads % spec.tp and spec.tp % kv_heads:
            raise ValueError(f"worker {spec.worker_id}: KV policies need tp dividing {spec.model.name}'s "
                             f"{kv_heads} KV heads or a multiple of them (replicated heads), got tp={spec.tp}")
        link = self.links.get(min(g.gpu_id for g in gpus))
        return KVManager(self.env, kv.policy_for(spec.model), self._kv_bytes_per_gpu(spec), self.block_size,
                         link, kv.sim, truth_head_model(spec.model), spec.tp)

    def _kv_bytes_per_gpu(self, spec: WorkerSpec) -> float:
        """The worker's KV budget on each of its GPUs: its spec's, else what the memory config leaves."""
        if spec.kv_bytes_per_gpu is not None:
            return spec.kv_bytes_per_gpu
        return kv_budget_bytes_per_gpu(stage_model(spec.model, spec.pp), spec.gpu, spec.tp, self.memory)

    def _kv_blocks(self, spec: WorkerSpec) -> int:
        kv_bytes = self._kv_bytes_per_gpu(spec)
        if not math.isfinite(kv_bytes):
            raise MemoryError(f"worker {spec.worker_id}: its KV budget is {kv_bytes} bytes per GPU; "
                              "engine.gpu_memory_utilization, engine.activation_reserve_gib and cluster.kv_gib "
                              "must be finite numbers")
        block_bytes = self.block_size * kv_bytes_per_token_per_gpu(stage_model(spec.model, spec.pp), spec.tp)
        blocks = int(max(kv_bytes, 0.0) // block_bytes)
        if blocks < 1 and spec.kv_bytes_per_gpu is not None:  # the spec's own KV reservation is too small
            raise MemoryError(
                f"worker {spec.worker_id}: the KV reservation of {kv_bytes / 2**20:.3g} MiB per GPU "
                f"(cluster.kv_gib) holds no KV block: one block of engine.block_size={self.block_size} tokens of "
                f"{spec.model.name} on tp={spec.tp} takes {block_bytes / 2**20:.3g} MiB; raise cluster.kv_gib "
                "(or null for the memory left after weights)")
        return blocks

    # ------------------------------------------------------------------------------------- running
    def worker(self, worker_id: int) -> Worker:
        if worker_id not in self._by_id:
            raise ValueError(f"no worker {worker_id}; the cluster has workers {sorted(self._by_id)}")
        return self._by_id[worker_id]

    def _candidates(self, request: Request) -> list[Worker]:
        if request.model is None:
            return self.workers
        found = [w for w in self.workers if w.spec.model.name == request.model]
        if not found:
            served = sorted({w.spec.model.name for w in self.workers})
            raise ValueError(f"request {request.request_id} asks for model {request.model!r} but the cluster "
                             f"serves only {served}; fix the workload's model names or the cluster's models")
        return found

    def _route(self, seq: SeqState, worker_id: int | None) -> Worker:
        if worker_id is None:
            return self.router.pick(seq, self._candidates(seq.request))
        worker = self.worker(worker_id)
        model = seq.request.model
        if model is not None and worker.spec.model.name != model:
            raise ValueError(f"request {seq.request_id} for {model!r} assigned to worker {worker_id}, "
                             f"which serves {worker.spec.model.name!r}")
        return worker

    def _dispatch(self, seq: SeqState, worker_id: int | None) -> None:
        seq.arrival_s = self.env.now
        self._route(seq, worker_id).add(seq)

    def submit(self, request: Request, worker_id: int | None = None) -> SeqState:
        """Add a request now (from a callback or process during run); routed unless worker_id is given."""
        check_requests([request])
        seq = SeqState(request)
        self._seqs.append(seq)
        self._expected += 1
        self._dispatch(seq, worker_id)
        return seq

    def _on_finish(self, seq: SeqState) -> None:
        self._finished += 1
        if self._bar is not None:
            self._bar.update(1)
        if self._user_on_finish is not None:
            self._user_on_finish(seq, self)
        if self._finished == self._expected and not self._all_done.triggered:
            self._all_done.succeed()

    @staticmethod
    def _arrivals(env: simpy.Environment, seqs: list[SeqState], deliver: Callable[[SeqState], None]):
        """Each request reaches `deliver` at its trace time exactly, its arrival_s set on env's clock."""
        for seq in seqs:
            if seq.request.arrival_s > env.now:
                yield timeout_at(env, seq.request.arrival_s)
            seq.arrival_s = env.now
            deliver(seq)

    def _independent(self, on_finish) -> bool:
        """Whether the workers can be simulated one after another, each in its own SimPy environment, with the
        same results: nothing couples them (routing fixed in advance, no GPU or host link shared, no KV policy's
        copies, no callback submitting requests). One small event queue per worker instead of one with every
        worker's events: the same events, fewer heap levels and a working set that stays in the CPU caches."""
        return (self.independent_workers and len(self.workers) > 1 and on_finish is None
                and getattr(self.router, "static", False)
                and all(w.kv is None and w.compute_lanes is None for w in self.workers))

    def _run_independent(self, seqs: list[SeqState], assignment: Mapping[int, int]) -> None:
        """Route every request now (a static router picks by arrival order only), then run each worker alone."""
        mine: dict[int, list[SeqState]] = {w.worker_id: [] for w in self.workers}
        for seq in seqs:
            mine[self._route(seq, assignment.get(seq.request_id)).worker_id].append(seq)
        for worker in self.workers:
            env = worker.move_to_new_env()
            env.process(self._arrivals(env, mine[worker.worker_id], worker.add))
            env.run()
            stuck = [q for q in mine[worker.worker_id]
                     if q.status != "finished" and not q.status.startswith("rejected")]
            if stuck:
                raise RuntimeError(f"simulation stalled with {len(stuck)} unfinished requests on worker "
                                   f"{worker.worker_id}, e.g. {stuck[:3]}")

    def run(self, requests: Sequence[Request], assignment: Mapping[int, int] | None = None,
            on_finish: Callable[[SeqState, "Cluster"], None] | None = None) -> ClusterRun:
        """Simulate until every request (including ones submitted by `on_finish`) has finished.

        assignment: request_id -> worker_id for requests that bypass the router.
        on_finish(seq, cluster): called as each request finishes or is rejected; may call cluster.submit.
        """
        check_requests(requests)
        seqs = list(map(SeqState, sorted(requests, key=attrgetter("arrival_s", "request_id"))))
        self._seqs.extend(seqs)
        self._expected += len(seqs)
        self._user_on_finish = on_finish
        self._bar = tqdm(total=len(seqs), desc="simulating", unit="req", disable=not self.progress,
                         mininterval=0.5)
        assignment = assignment or {}
        if seqs and self._independent(on_finish):
            self._run_independent(seqs, assignment)
        elif seqs:
            self.env.process(self._arrivals(self.env, seqs,
                                            lambda seq: self._route(seq, assignment.get(seq.request_id)).add(seq)))
            try:
                self.env.run(until=self._all_done)
            except RuntimeError as err:  # SimPy: no events left before every request finished
                stuck = [q for q in self._seqs if q.status != "finished" and not q.status.startswith("rejected")]
                raise RuntimeError(f"simulation stalled with {len(stuck)} unfinished requests, "
                                   f"e.g. {stuck[:3]}") from err
        self._bar.close()
        for link in self.links.values():  # quiet copies that landed by the end count (their events would have run)
            link.settle(self.env.now)
        end = max((s.finish_s for s in self._seqs if s.finish_s == s.finish_s), default=0.0)
        return ClusterRun(seqs=list(self._seqs), workers=self.workers, end_s=end)
