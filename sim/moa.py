"""Executes a MoA placement plan in the simulator: expert stage by GPU and residency phase, then aggregation.

Stage 1 runs every GPU's phases one after another (each phase: its co-resident replicas, loaded in
turn, sharing the GPU's memory and compute); GPUs are independent, so each phase is its own Cluster
run, offset to its start time. Stage 2 runs the aggregator replicas (one per GPU, one tensor-parallel
group for `sequential`, one GPU for `static`) on the non-bypassed queries: after a barrier at the end
of stage 1 (the paper's accounting), or `pipelined` (our extension: a query's aggregator prompt
arrives when its own experts finish; each GPU's aggregator loads once that GPU's expert phases end).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from tessera.interface import CostModel
from tessera.memory import MemoryConfig, kv_bytes_per_token_per_gpu
from tessera.placement.plan import PlacementPlan
from tessera.placement.problem import MoAPlacementProblem
from tessera.scheduling import SchedulerConfig
from tessera.types import GPUSpec, LinkSpec, ModelSpec, Request, WorkerSpec
from tessera.workload.moa import expert_info
from tessera.sim.cluster import Cluster
from tessera.sim.kv_setup import KVSetup
from tessera.sim.router import make_router
from tessera.sim.sequence import SeqState

AGGREGATION_MODES = ("barrier", "pipelined")
KV_TOTAL_KEYS = ("pcie_h2d_bytes", "pcie_d2h_bytes", "num_reloads", "stall_s")


@dataclass(frozen=True, slots=True)
class Segment:
    """One replica's life on one GPU: loading from start_s to ready_s, then serving until end_s."""

    gpu: int
    expert: str
    stage: str
    start_s: float
    ready_s: float
    end_s: float


@dataclass(slots=True)
class StageRun:
    """What one stage produced: finished requests with absolute times, replica segments, GPU busy time."""

    records: list[tuple[SeqState, float]] = field(default_factory=list)  # (state, time offset)
    segments: list[Segment] = field(default_factory=list)
    gpu_end_s: dict[int, float] = field(default_factory=dict)
    gpu_busy_s: dict[int, float] = field(default_factory=dict)
    expert_busy_s: dict[str, float] = field(default_factory=dict)  # GPU time of all of an expert's replicas
    kv_totals: dict[str, float] = field(default_factory=dict)  # KV-policy counters summed over replicas
    kv_bytes: dict[int, float] = field(default_factory=dict)  # per request: host<->device KV bytes (H2D + D2H)

    def add_kv_stats(self, workers) -> None:
        links = set()  # co-resident replicas share their GPU's host link: its byte counters count once
        for worker in workers:
            if worker.kv is None:
                continue
            shared = worker.kv.link is not None and id(worker.kv.link) in links
            if worker.kv.link is not None:
                links.add(id(worker.kv.link))
            for key, value in worker.kv.run_stats().items():
                if key in KV_TOTAL_KEYS and not (shared and key.endswith("_bytes")):
                    self.kv_totals[key] = self.kv_totals.get(key, 0.0) + float(value)
            for request_id, st in worker.kv.request_stats().items():
                self.kv_bytes[request_id] = self.kv_bytes.get(request_id, 0.0) + st["h2d_bytes"] + st["d2h_bytes"]

    @property
    def end_s(self) -> float:
        return max(self.gpu_end_s.values(), default=0.0)

    def finish_time(self, seq: SeqState, offset: float) -> float:
        return seq.finish_s + offset


@dataclass(frozen=True)
class MoASimContext:
    """Hardware and engine settings shared by both stages."""

    gpu: GPUSpec
    num_gpus: int
    scheduler: SchedulerConfig
    memory: MemoryConfig
    cost_for: object  # Callable[[WorkerSpec], CostModel]
    load_s: dict[str, float]  # per expert: load time on one GPU
    load_tp_s: dict[str, float]  # per expert: load time as a tensor-parallel group over all GPUs
    teardown_s: float = 0.0
    kv: KVSetup | None = None  # the KV policy every replica runs (None: full KV on the fast path)
    host_link: LinkSpec | None = None  # each GPU's host link (PCIe), for KV offload traffic
    models: dict[str, ModelSpec] | None = None  # per expert name its model (None: the MoA catalog pool's)
    kv_bytes: dict[str, float] | None = None  # per expert its replica's fixed KV pool (None: reservation + spare)
    serial_loads: bool = False  # True: a phase serves only once all its replicas loaded (one device does both)

    def model_of(self, expert: str) -> ModelSpec:
        return self.models[expert] if self.models is not None else expert_info(expert).model

    def cluster(self, specs: list[WorkerSpec], router: str) -> Cluster:
        return Cluster(specs, self.cost_for, self.scheduler, self.memory, make_router(router),
                       host_link=self.host_link, kv=self.kv)


def _kv_shares(ctx: MoASimContext, experts: list[str], reserve_bytes: dict[str, float]) -> dict[str, float]:
    """KV bytes per co-resident replica: its reservation plus a share of the spare memory."""
    usable = ctx.gpu.hbm_bytes * ctx.memory.gpu_memory_utilization
    fixed = sum(expert_info(e).model.weight_bytes + ctx.memory.activation_reserve_gib * 2**30 for e in experts)
    reserved = sum(reserve_bytes[e] for e in experts)
    spare = usable - fixed - reserved
    if spare < 0:
        raise MemoryError(f"phase {experts} on one {ctx.gpu.name} needs {(fixed + reserved) / 1e9:.1f} GB, "
                          f"{-spare / 1e9:.1f} GB more than the {usable / 1e9:.1f} GB usable; the plan's "
                          "memory model and the simulator's disagree (report this as a bug)")
    spare *= 1 - 1e-9  # keep float rounding from overfilling the GPU by a few bytes
    return {e: reserve_bytes[e] + (spare * reserve_bytes[e] / reserved if reserved > 0 else spare / len(experts))
            for e in experts}


def kv_reservations(problem: MoAPlacementProblem, memory: MemoryConfig) -> dict[str, float]:
    """Per expert: its replica's KV reservation (memory - weights - activation reserve)."""
    return {e: problem.expert_memory_bytes[i] - expert_info(e).model.weight_bytes
            - memory.activation_reserve_gib * 2**30 for i, e in enumerate(problem.experts)}


def _run_phase(ctx: MoASimContext, gpu: int, experts: list[str], kv_bytes: dict[str, float],
               requests: list[Request], start_s: float, stage: str, out: StageRun) -> float:
    """Simulate one residency phase of one GPU; returns the phase's end time (absolute)."""
    specs, ready, t = [], {}, 0.0
    for expert in experts:
        t += ctx.load_s[expert]
        ready[expert] = t
    if ctx.serial_loads:
        ready = dict.fromkeys(experts, t)
    for i, expert in enumerate(experts):
        specs.append(WorkerSpec(worker_id=i, gpu=ctx.gpu, model=ctx.model_of(expert), gpu_ids=(0,),
                                kv_bytes_per_gpu=kv_bytes[expert], ready_s=ready[expert]))
    cluster = ctx.cluster(specs, "round_robin")
    worker_of = {e: i for i, e in enumerate(experts)}
    assignment = {r.request_id: worker_of[r.model] for r in requests}
    run = cluster.run(requests, assignment=assignment)
    end = max(run.end_s, t)
    out.records.extend((seq, start_s) for seq in run.seqs)
    out.add_kv_stats(run.workers)
    for expert, worker in zip(experts, run.workers):
        served = [s.finish_s for s in run.seqs if s.worker_id == worker.worker_id and s.finish_s == s.finish_s]
        out.segments.append(Segment(gpu, expert, stage, start_s + ready[expert] - ctx.load_s[expert],
                                    start_s + ready[expert], start_s + max(served, default=ready[expert])))
        out.gpu_busy_s[gpu] = out.gpu_busy_s.get(gpu, 0.0) + worker.busy_s
        out.expert_busy_s[expert] = out.expert_busy_s.get(expert, 0.0) + worker.busy_s
    return start_s + end


def run_expert_stage(ctx: MoASimContext, problem: MoAPlacementProblem, plan: PlacementPlan,
                     requests: list[Request], stage: str = "expert", start_s: float = 0.0) -> StageRun:
    """Execute `plan` for `requests` (whose ids are problem.prompt_ids) from start_s."""
    out = StageRun()
    by_id = {r.request_id: r for r in requests}
    if plan.tensor_parallel:
        return _run_tensor_parallel(ctx, problem, by_id, stage, start_s, out)
    reserve = kv_reservations(problem, ctx.memory) if ctx.kv_bytes is None else None
    placed: dict[tuple[int, int], list[Request]] = {}
    for p, w in enumerate(plan.assignment):
        placed.setdefault((w, problem.prompt_expert[p]), []).append(by_id[problem.prompt_ids[p]])
    for w in range(ctx.num_gpus):
        t = start_s
        for phase in plan.phases.get(w, []):
            experts = [problem.experts[e] for e in phase]
            phase_requests = [r for e in phase for r in placed.get((w, e), [])]
            kv = _kv_shares(ctx, experts, reserve) if reserve is not None else ctx.kv_bytes
            t = _run_phase(ctx, w, experts, kv, phase_requests, t, stage, out)
        out.gpu_end_s[w] = t
    return out


def run_data_parallel(ctx: MoASimContext, problem: MoAPlacementProblem, requests: list[Request],
                      stage: str = "expert", start_s: float = 0.0) -> StageRun:
    """`sequential` where there is no tensor parallelism (CPU workers): one expert at a time on every worker,
    its prompts split round-robin over them, the next expert once all finished (a barrier per expert)."""
    out = StageRun()
    by_id = {r.request_id: r for r in requests}
    groups: dict[int, list[Request]] = {}
    for p, e in enumerate(problem.prompt_expert):
        groups.setdefault(e, []).append(by_id[problem.prompt_ids[p]])
    t = start_s
    for e in sorted(groups):
        expert = problem.experts[e]
        kv = ctx.kv_bytes if ctx.kv_bytes is not None else _kv_shares(
            ctx, [expert], kv_reservations(problem, ctx.memory))
        ends = [_run_phase(ctx, w, [expert], kv, groups[e][w::ctx.num_gpus], t, stage, out)
                for w in range(min(ctx.num_gpus, len(groups[e])))]
        t = max(ends) + ctx.teardown_s
    out.gpu_end_s = {g: t for g in range(ctx.num_gpus)}
    return out


def _run_tensor_parallel(ctx: MoASimContext, problem: MoAPlacementProblem, by_id: dict[int, Request],
                         stage: str, start_s: float, out: StageRun) -> StageRun:
    """`sequential`: one expert at a time, tensor-parallel over every GPU, loaded then torn down."""
    t = start_s
    groups: dict[int, list[Request]] = {}
    for p, e in enumerate(problem.prompt_expert):
        groups.setdefault(e, []).append(by_id[problem.prompt_ids[p]])
    all_gpus = tuple(range(ctx.num_gpus))
    for e in sorted(groups):
        expert = problem.experts[e]
        load = ctx.load_tp_s[expert]
        spec = WorkerSpec(worker_id=0, gpu=ctx.gpu, model=expert_info(expert).model, tp=ctx.num_gpus,
                          gpu_ids=all_gpus, ready_s=load)
        run = ctx.cluster([spec], "round_robin").run(groups[e])
        out.records.extend((seq, t) for seq in run.seqs)
        out.add_kv_stats(run.workers)
        out.segments.extend(Segment(g, expert, stage, t, t + load, t + run.end_s) for g in all_gpus)
        for g in all_gpus:
            out.gpu_busy_s[g] = out.gpu_busy_s.get(g, 0.0) + run.workers[0].busy_s
        t += max(run.end_s, load) + ctx.teardown_s
    out.gpu_end_s = {g: t for g in all_gpus}
    return out


def run_aggregator_stage(ctx: MoASimContext, aggregator: str, requests: list[Request], gpus: list[int],
                         gpu_ready_s: dict[int, float], tensor_parallel: bool,
                         assignment: dict[int, int] | None = None) -> StageRun:
    """Aggregator replicas (one per GPU in `gpus`, or one TP group) serve `requests` at their arrival times.

    gpu_ready_s[g]: when GPU g is free for its aggregator replica (the load starts then).
    assignment: request_id -> index into `gpus` (None: least outstanding tokens on arrival).
    """
    out = StageRun()
    if not requests:
        return out
    model = ctx.model_of(aggregator)
    if tensor_parallel:
        start = max(gpu_ready_s[g] for g in gpus)
        specs = [WorkerSpec(0, ctx.gpu, model, tp=len(gpus), gpu_ids=tuple(range(len(gpus))),
                            ready_s=start + ctx.load_tp_s[aggregator])]
    else:
        specs = [WorkerSpec(i, ctx.gpu, model, gpu_ids=(i,), ready_s=gpu_ready_s[g] + ctx.load_s[aggregator])
                 for i, g in enumerate(gpus)]
    run = ctx.cluster(specs, "least_outstanding_tokens").run(requests, assignment=assignment)
    out.records.extend((seq, 0.0) for seq in run.seqs)
    out.add_kv_stats(run.workers)
    for worker in run.workers:
        gpu_list = gpus if tensor_parallel else [gpus[worker.worker_id]]
        served = [s.finish_s for s in run.seqs if s.worker_id == worker.worker_id and s.finish_s == s.finish_s]
        for g in gpu_list:
            ready = worker.spec.ready_s
            load = ctx.load_tp_s[aggregator] if tensor_parallel else ctx.load_s[aggregator]
            end = max(served, default=ready)
            out.segments.append(Segment(g, aggregator, "aggregator", ready - load, ready, end))
            out.gpu_end_s[g] = max(out.gpu_end_s.get(g, 0.0), end)
            out.gpu_busy_s[g] = out.gpu_busy_s.get(g, 0.0) + worker.busy_s
    return out
