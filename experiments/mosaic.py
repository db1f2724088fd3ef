"""Experiment `mosaic`: MoA serving on 4 GPUs, the baselines against MOSAIC (ILP placement + aggregator bypass).

Per dataset, one sampled MoA workload runs under every scheduler on the same prompts; the table gives
expert-stage, aggregator-stage and end-to-end times, speedups over the baseline, bypass rate, accuracy,
replicas per expert and GPU busy fractions. Writes mosaic_table.csv, requests.parquet, queries.parquet,
summary.json, a Gantt chart of MOSAIC's run on the first dataset and a speedup bar chart.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from tessera.aggregation import make_aggregator
from tessera.cost import make_cost_model
from tessera.experiments.config import ConfigError
from tessera.experiments.mosaic_report import gantt_figure, records_frame, speedup_figure
from tessera.experiments.resolve import resolve_kv
from tessera.hardware import gpu as gpu_by_name
from tessera.hardware import host_link
from tessera.memory import MemoryConfig
from tessera.placement import (CostConfig, MosaicConfig, PlacementInfeasible, PlacementInputError,
                               build_placement_problem,
                               make_placer)
from tessera.placement.costs import load_time_s
from tessera.results import save_run
from tessera.scheduling import SchedulerConfig
from tessera.sim.moa import AGGREGATION_MODES, MoASimContext, run_aggregator_stage, run_expert_stage
from tessera.workload.moa import expert_info, generate_moa_workload
from tessera.workload.moa_defaults import DATASETS, MoAConfig


@dataclass(frozen=True)
class MosaicParams:
    datasets: tuple[str, ...] = ("mmlu_pro", "gpqa", "aime", "medmcqa")
    schedulers: tuple[str, ...] = ("sequential", "static", "least_loaded", "lpt", "mosaic")
    baseline: str = "sequential"
    aggregation_mode: str = "barrier"
    query_fraction: float = 1.0  # < 1 scales every dataset's query count down (quick runs)
    cost_model: str = "roofline"
    calibration_rounds: int = 1  # cost-based placers re-solve on costs rescaled by a simulated run (ours)
    profiled_batch_size: int = 128  # B*: the steady batch the placer's profiled costs amortise decode over
    quick: bool = False  # apply quick_overrides (a small slice for tests and a first look)
    quick_overrides: dict | None = None
    runtime: dict | None = None  # backend=runtime only (experiments/mosaic_runtime/settings.py reads it)


def params_with_quick(cfg: DictConfig) -> dict:
    """cfg.params as a dict, quick_overrides applied when params.quick (its `runtime` entries key by key)."""
    raw = OmegaConf.to_container(cfg.params, resolve=True) if cfg.params else {}
    if raw.get("quick"):
        quick = dict(raw.get("quick_overrides") or {})
        runtime_quick = quick.pop("runtime", None) or {}
        raw.update(quick)
        raw["runtime"] = {**(raw.get("runtime") or {}), **runtime_quick}
    return raw


def _params(cfg: DictConfig) -> MosaicParams:
    raw = params_with_quick(cfg)
    known = {f.name for f in fields(MosaicParams)}
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(f"params: unknown keys {sorted(unknown)} for experiment mosaic; allowed {sorted(known)}")
    p = MosaicParams(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
    bad = [d for d in p.datasets if d not in DATASETS]
    if bad:
        raise ConfigError(f"params.datasets has {bad}: use names from {sorted(DATASETS)}")
    if p.aggregation_mode not in AGGREGATION_MODES:
        raise ConfigError(f"params.aggregation_mode={p.aggregation_mode!r}: use one of {AGGREGATION_MODES}")
    if p.baseline not in p.schedulers:
        raise ConfigError(f"params.baseline={p.baseline!r} must be one of params.schedulers {list(p.schedulers)}")
    if not 0 < p.query_fraction <= 1:
        raise ConfigError(f"params.query_fraction={p.query_fraction}: use a fraction in (0, 1]")
    if cfg.cluster.num_workers < 1:
        raise ConfigError(f"cluster.num_workers={cfg.cluster.num_workers} is invalid: MOSAIC places experts on at "
                          "least 1 worker")
    if cfg.cluster.get("calibration") or not cfg.cluster.gpu:
        raise ConfigError("cluster: experiment=mosaic places catalog LLMs on catalog GPUs; pick a GPU cluster "
                          "(e.g. cluster=h100x4), not a calibrated machine or cluster.gpu=null")
    return p


def _context(cfg: DictConfig, params: MosaicParams, cost_cfg: CostConfig, experts: list[str]) -> MoASimContext:
    gpu = gpu_by_name(cfg.cluster.gpu)
    n = cfg.cluster.num_workers
    e = cfg.engine
    cache: dict = {}

    def cost_for(spec):
        key = (spec.model.name, spec.tp)
        if key not in cache:
            cache[key] = make_cost_model(params.cost_model, spec.model, gpu, spec.tp)
        return cache[key]

    load = {x: load_time_s(x, cost_cfg) for x in experts}
    load_tp = {x: load_time_s(x, cost_cfg, tp=n) for x in experts}
    kv = None
    for x in experts:  # validated against every model it will run on (head_split needs a pattern per model)
        try:
            kv = resolve_kv(cfg.get("kvpolicy"), expert_info(x).model)
        except ConfigError as err:
            raise ConfigError(f"{err} (for MoA model {x})") from None
    return MoASimContext(gpu=gpu, num_gpus=n,
                         scheduler=SchedulerConfig(block_size=e.block_size, max_num_seqs=e.max_num_seqs,
                                                   max_num_batched_tokens=e.max_num_batched_tokens,
                                                   chunked_prefill=e.chunked_prefill, watermark=e.watermark),
                         memory=cost_cfg.memory, cost_for=cost_for, load_s=load, load_tp_s=load_tp,
                         teardown_s=cost_cfg.teardown_s, kv=kv, host_link=host_link(gpu))


def place(problem, placer_name: str, placer_params: dict):
    """The scheduler's plan and its solve time; an infeasible instance becomes a one-line config error."""
    t0 = time.perf_counter()
    try:
        plan = make_placer(placer_name, **placer_params).place(problem)
    except (PlacementInfeasible, MemoryError) as err:
        raise ConfigError(f"placement {placer_name!r}: {err} (lower params.profiled_batch_size to shrink KV "
                          "reservations, or use bigger GPUs)") from None
    except PlacementInputError as err:
        raise ConfigError(f"placement {placer_name!r}: {err}") from None
    return plan, time.perf_counter() - t0


def problem_for(*args, **kwargs):
    """build_placement_problem, its input errors as one-line config errors."""
    try:
        return build_placement_problem(*args, **kwargs)
    except PlacementInputError as err:
        raise ConfigError(f"placement: {err}") from None


COST_BASED = ("lpt", "mosaic")


def calibrated_plan(workload, problem, ctx, placer_name: str, placer_params: dict, rounds: int):
    """Place, simulate the expert stage, rescale each expert's prompt costs by simulated GPU time over
    predicted work, re-place; keep the plan with the shortest simulated expert stage.

    The placer's profiled costs assume every replica decodes at a steady batch B*; the simulator knows
    the batch each replica really runs at. This loop (our extension, not in the paper) feeds that back.
    """
    plan, solve_s = place(problem, placer_name, placer_params)
    if placer_name not in COST_BASED or rounds == 0:
        return plan, solve_s, 0
    requests = workload.expert_requests()
    stage = run_expert_stage(ctx, problem, plan, requests)
    best = (stage.end_s, plan, 0)
    current = problem
    for round_ in range(1, rounds + 1):
        current = rescaled_costs(current, stage.expert_busy_s)
        candidate, extra_s = place(current, placer_name, placer_params)
        solve_s += extra_s
        stage = run_expert_stage(ctx, problem, candidate, requests)
        if stage.end_s < best[0]:
            best = (stage.end_s, candidate, round_)
    return best[1], solve_s, best[2]


def rescaled_costs(problem, expert_busy_s: dict[str, float]):
    """Each expert's prompt costs scaled so their sum equals the GPU time its replicas took in simulation."""
    predicted: dict[int, float] = {}
    for p, e in enumerate(problem.prompt_expert):
        predicted[e] = predicted.get(e, 0.0) + problem.prompt_cost_s[p]
    scale = {e: expert_busy_s.get(problem.experts[e], w) / w if w > 0 else 1.0 for e, w in predicted.items()}
    return replace(problem, prompt_cost_s=tuple(c * scale[problem.prompt_expert[p]]
                                                for p, c in enumerate(problem.prompt_cost_s)))


def run_one(workload, problem, ctx, cost_cfg, placer_name, placer_params, plan, solve_s, aggregator,
            mode) -> dict:
    """Both stages of one (scheduler, aggregation) on one workload; returns times, outcomes and records."""
    stage1 = run_expert_stage(ctx, problem, plan, workload.expert_requests())
    done: dict[int, float] = {}
    for seq, offset in stage1.records:
        q = seq.request.query_id
        done[q] = max(done.get(q, 0.0), seq.finish_s + offset)
    barrier = stage1.end_s
    outcomes = {q.query_id: workload.aggregate(q, aggregator, done[q.query_id]) for q in workload.queries}
    agg_requests = [o.request for o in outcomes.values() if o.request is not None]
    stage2 = None
    if agg_requests:
        if mode == "barrier":
            agg_requests = [_at(r, barrier) for r in agg_requests]
        aggregator_name = agg_requests[0].model
        agg_cost = CostConfig(**{**{f.name: getattr(cost_cfg, f.name) for f in fields(CostConfig)},
                                 "instruct_max_replicas": None})
        agg_problem = problem_for(workload, [ctx.gpu] * ctx.num_gpus, agg_cost, agg_requests)
        agg_plan, _ = place(agg_problem, placer_name, placer_params)
        gpus = sorted(w for w, experts in agg_plan.replicas.items() if experts) or [0]
        if agg_plan.tensor_parallel:
            gpus = list(range(ctx.num_gpus))
        ready = ({g: barrier for g in gpus} if mode == "barrier" else {g: stage1.gpu_end_s[g] for g in gpus})
        assignment = None
        if mode == "barrier" and not agg_plan.tensor_parallel:
            slot = {g: i for i, g in enumerate(gpus)}
            assignment = {agg_problem.prompt_ids[p]: slot[w] for p, w in enumerate(agg_plan.assignment)}
        stage2 = run_aggregator_stage(ctx, aggregator_name, agg_requests, gpus, ready,
                                      agg_plan.tensor_parallel, assignment)
    end = max(barrier, stage2.end_s if stage2 else 0.0)
    return {"plan": plan, "solve_s": solve_s, "stage1": stage1, "stage2": stage2, "outcomes": outcomes,
            "expert_stage_s": barrier, "aggregator_stage_s": end - barrier, "e2e_s": end}


def _at(request, arrival_s):
    return replace(request, arrival_s=float(arrival_s))


def _row(dataset, scheduler, aggregation, result, problem, ctx) -> dict:
    outcomes = result["outcomes"].values()
    busy = {g: 0.0 for g in range(ctx.num_gpus)}
    for stage in (result["stage1"], result["stage2"]):
        if stage:
            for g, b in stage.gpu_busy_s.items():
                busy[g] += b
    replicas = {}
    for w, experts in result["plan"].replicas.items():
        for e in experts:
            replicas[problem.experts[e]] = replicas.get(problem.experts[e], 0) + 1
    plan = result["plan"]
    return {
        "dataset": dataset, "scheduler": scheduler, "aggregation": aggregation,
        "expert_stage_s": result["expert_stage_s"], "aggregator_stage_s": result["aggregator_stage_s"],
        "e2e_s": result["e2e_s"],
        "bypass_rate": sum(o.request is None for o in outcomes) / len(outcomes),
        "accuracy": sum(o.is_correct for o in outcomes) / len(outcomes),
        "replicas": ("tp" + str(ctx.num_gpus) + " group" if plan.tensor_parallel else
                     ";".join(f"{k}:{v}" for k, v in sorted(replicas.items()) if v > 1) or "none>1"),
        "num_replicas": sum(replicas.values()),
        "phases": max((len(p) for p in plan.phases.values()), default=1),
        "gpu_busy_frac": ";".join(f"{busy[g] / result['e2e_s']:.2f}" for g in sorted(busy)),
        "predicted_expert_stage_s": plan.makespan_s,  # the placer's own estimate from profiled costs
        "placement_solve_s": result["solve_s"], "ilp_gap": plan.gap, "fallback": plan.fallback,
        "kvpolicy": ctx.kv.name if ctx.kv else "full", **_kv_columns(result),
    }


def _kv_columns(result) -> dict:
    """PCIe traffic, reloads and stall time of the KV policy over both stages (zeros for full KV)."""
    totals: dict[str, float] = {}
    for stage in (result["stage1"], result["stage2"]):
        for key, value in (stage.kv_totals if stage else {}).items():
            totals[key] = totals.get(key, 0.0) + value
    return {"pcie_h2d_gb": totals.get("pcie_h2d_bytes", 0.0) / 1e9,
            "pcie_d2h_gb": totals.get("pcie_d2h_bytes", 0.0) / 1e9,
            "reloads": int(totals.get("num_reloads", 0)), "stall_s": totals.get("stall_s", 0.0)}


def describe(cfg: DictConfig) -> dict:
    """What a run of this config simulates or executes (summary.json metadata.ran)."""
    if cfg.backend.kind == "runtime":
        from tessera.experiments.mosaic_runtime.run import describe as describe_runtime
        return describe_runtime(cfg)
    params = _params(cfg)
    kv = OmegaConf.to_container(cfg.kvpolicy, resolve=True) if cfg.get("kvpolicy") else {"name": "full"}
    return {"params": asdict(params), "gpu": cfg.cluster.gpu, "num_workers": cfg.cluster.num_workers,
            "engine": OmegaConf.to_container(cfg.engine, resolve=True), "kvpolicy": kv,
            "placement": OmegaConf.to_container(cfg.placement, resolve=True) if cfg.placement else {},
            "aggregation": OmegaConf.to_container(cfg.aggregation, resolve=True) if cfg.aggregation else {},
            "seed": cfg.seed}


def run(cfg: DictConfig, run_dir: Path, metadata: dict) -> dict:
    if cfg.backend.kind == "runtime":  # MOSAIC on Ray workers with real models, checked against the simulator
        from tessera.experiments.mosaic_runtime.run import run as run_runtime
        return run_runtime(cfg, run_dir, metadata)
    params = _params(cfg)
    try:
        mosaic_cfg = MosaicConfig(**OmegaConf.to_container(cfg.placement, resolve=True)) if cfg.placement else MosaicConfig()
        agg = OmegaConf.to_container(cfg.aggregation, resolve=True) if cfg.aggregation else {"name": "unanimous"}
        policy_name = agg.pop("name")
        make_aggregator(policy_name, **agg)  # validate once up front
        memory = MemoryConfig(cfg.engine.gpu_memory_utilization, cfg.engine.activation_reserve_gib)
        cost_cfg = CostConfig(cost_model=params.cost_model, memory=memory, batch_size=params.profiled_batch_size)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"placement/aggregation/engine: {err}") from None
    always = make_aggregator("always")
    rows, frames, query_rows, gantt_source = [], [], [], None
    runs = [(d, s) for d in params.datasets for s in params.schedulers]
    for dataset, scheduler in tqdm(runs, desc="mosaic", disable=not cfg.output.progress):
        counts = {dataset: max(1, round(DATASETS[dataset].num_queries * params.query_fraction))}
        workload = generate_moa_workload(MoAConfig(datasets=(dataset,), num_queries=counts), seed=cfg.seed)
        problem = problem_for(workload, [cfg.cluster.gpu] * cfg.cluster.num_workers, cost_cfg)
        ctx = _context(cfg, params, cost_cfg, list(problem.experts) + [DATASETS[dataset].aggregator])
        if policy_name == "weighted" and "weights" not in agg:  # reliability = each expert's accuracy
            policy = make_aggregator(policy_name, weights=dict(workload.config.accuracy[dataset]), **agg)
        else:
            policy = make_aggregator(policy_name, **agg)
        variants = [(scheduler, "always", always)]
        if scheduler == "mosaic" and policy_name != "always":
            variants.append((scheduler, policy_name, policy))
        placer_params = ({f.name: getattr(mosaic_cfg, f.name) for f in fields(MosaicConfig)}
                         if scheduler == "mosaic" else {})
        plan, solve_s, used_round = calibrated_plan(workload, problem, ctx, scheduler, placer_params,
                                                    params.calibration_rounds)  # one plan for every variant
        for name, agg_name, aggregator in variants:
            result = run_one(workload, problem, ctx, cost_cfg, name, placer_params, plan, solve_s, aggregator,
                             params.aggregation_mode)
            rows.append({**_row(dataset, name, agg_name, result, problem, ctx), "calibration_round": used_round})
            frames.append(records_frame(workload, result, f"{dataset}/{name}/{agg_name}"))
            query_rows.extend({"dataset": dataset, "scheduler": name, "aggregation": agg_name, "query_id": q,
                               "bypass": o.request is None, "agreement": o.decision.agreement,
                               "final_answer": o.final_answer, "correct": o.is_correct}
                              for q, o in result["outcomes"].items())
            if gantt_source is None and name == "mosaic" and agg_name == policy_name:
                gantt_source = (dataset, result)
    table = _with_speedups(pd.DataFrame(rows), params.baseline)
    table.to_csv(run_dir / "mosaic_table.csv", index=False)
    pd.DataFrame(query_rows).to_parquet(run_dir / "queries.parquet", index=False)
    requests = pd.concat(frames, ignore_index=True)
    summary = {"table": table.to_dict(orient="records"), "aggregation_mode": params.aggregation_mode,
               "baseline": params.baseline}
    save_run(run_dir, requests, summary, None, metadata)
    if cfg.output.figures:
        speedup_figure(table, run_dir / "mosaic_speedups.png")
        if gantt_source:
            gantt_figure(gantt_source[1], run_dir / "mosaic_gantt.png",
                         f"MOSAIC ({policy_name} aggregation) on {gantt_source[0]}")
    if cfg.output.print_table:
        show = table[["dataset", "scheduler", "aggregation", "expert_stage_s", "aggregator_stage_s", "e2e_s",
                      "speedup_expert", "speedup_aggregator", "speedup_e2e", "bypass_rate", "accuracy",
                      "accuracy_change_pts", "replicas", "gpu_busy_frac"]
                     + (["kvpolicy", "pcie_h2d_gb", "reloads", "stall_s"] if (table["kvpolicy"] != "full").any()
                        else [])]
        with pd.option_context("display.width", 250, "display.max_columns", 30):
            print(show.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
        print(f"results: {run_dir}")
    return summary


def _with_speedups(table: pd.DataFrame, baseline: str) -> pd.DataFrame:
    base = table[(table["scheduler"] == baseline) & (table["aggregation"] == "always")].set_index("dataset")
    out = table.copy()
    b = base.loc[out["dataset"]]
    out["speedup_expert"] = b["expert_stage_s"].to_numpy() / out["expert_stage_s"].to_numpy()
    out["speedup_aggregator"] = b["aggregator_stage_s"].to_numpy() / out["aggregator_stage_s"].clip(lower=1e-9).to_numpy()
    out["speedup_e2e"] = b["e2e_s"].to_numpy() / out["e2e_s"].to_numpy()
    out["accuracy_change_pts"] = 100 * (out["accuracy"].to_numpy() - b["accuracy"].to_numpy())
    return out
