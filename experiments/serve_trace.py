"""Experiment `serve_trace`: replay a workload on a cluster; report latency percentiles and throughput.

Writes requests.parquet, kv_usage.parquet, workers.csv, summary.json and latency_cdf.png into the run dir, and on
the simulator batches.parquet and trace.json (output.batch_log, output.chrome_trace: experiments/batch_records.py).
"""
from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path

from omegaconf import DictConfig

from tessera.experiments import batch_records
from tessera.experiments.backends.sim import run_sim
from tessera.experiments.config import ConfigError
from tessera.experiments.report import format_summary, latency_cdf_figure
from tessera.experiments.resolve import resolve
from tessera.experiments.run_record import simulated_cluster_record
from tessera.results import rejection_summary, save_run, summarize
from tessera.workload import TraceError, build_workload
from tessera.workload import describe as describe_requests
from tessera.workload.context_limit import DEFAULT_POLICY, apply_context_limit, check_policy


def gpu_count(worker: dict) -> str:
    """A workers.csv row's GPUs for a label: tp, or tp x pp stages as their product and layout."""
    tp, pp = int(worker["tp"]), int(worker.get("pp", 1))
    return f"{tp * pp} (TP {tp} x PP {pp})" if pp > 1 else str(tp)


def worker_names(workers) -> dict[int, str]:
    """The trace's process name of each worker (a workers.csv frame): its model on its GPUs."""
    return {int(w["worker"]): f"worker {w['worker']}: {w['model']} on {gpu_count(w)} x {w['gpu']}"
            for w in workers.to_dict(orient="records")}


def workload_requests(spec) -> tuple[list, object]:
    """The workload's requests after the model's context limit (workload.context_limit), and its report."""
    workload = dict(spec.workload)
    policy = workload.pop("context_limit", DEFAULT_POLICY)
    try:
        check_policy(policy)
        requests = build_workload(workload)
        return apply_context_limit(requests, spec.model.max_position, policy)
    except TraceError:
        raise
    except (ValueError, TypeError, FileNotFoundError) as err:
        raise ConfigError(str(err) if str(err).startswith("workload.") else f"workload: {err}") from None


def describe(cfg: DictConfig) -> dict:
    """What a run of this config executes (summary.json metadata.ran): on the simulator the modelled
    cluster and cost model, on the runtime the checkpoint and engine settings (the measured device and
    dtype are added to summary.runtime when it ran)."""
    spec = resolve(cfg)
    try:
        check_policy(spec.workload.get("context_limit", DEFAULT_POLICY))
    except ValueError as err:
        raise ConfigError(str(err)) from None
    common = {"backend": cfg.backend.kind, "model": spec.model.name,
              "model_folder": str(spec.model_path) if spec.model_path else None, "workload": spec.workload,
              "seed": cfg.seed}
    if cfg.backend.kind == "runtime":
        from tessera.experiments.backends.runtime import runtime_settings
        kv = {"name": "full"} if spec.kv is None else {"name": spec.kv.name, **spec.kv.params}
        return common | {"engine": asdict(spec.scheduler), "kvpolicy": kv,
                         "runtime": runtime_settings(cfg.backend.get("runtime"))}
    return common | simulated_cluster_record(cfg, spec) | {"fast_forward": cfg.backend.fast_forward and spec.kv is None}


def run(cfg: DictConfig, run_dir: Path, metadata: dict) -> dict:
    spec = resolve(cfg)
    requests, context = workload_requests(spec)
    print(f"tessera: {context.line(spec.model.name)}")
    if context.num_requests and not requests:
        print(f"tessera: every request was refused (workload.context_limit={context.policy}): nothing was served; "
              "clip them (workload.context_limit=clip_prompt) or pick a model with a longer context", file=sys.stderr)
    if cfg.backend.kind == "runtime":
        from tessera.experiments.backends.runtime import run_runtime

        result = run_runtime(spec, requests, cfg.backend.get("runtime"), cfg.get("kvpolicy"), seed=cfg.seed,
                             progress=cfg.output.progress)
    else:
        records = batch_records.wanted(cfg, len(requests))
        result = run_sim(spec, requests, fast_forward=cfg.backend.fast_forward, progress=cfg.output.progress,
                         batch_log=any(records.values()))
        batch_records.write(run_dir, result, records, worker_names(result.workers))
    summary = summarize(result.requests, result.kv_usage)
    summary["workload"] = describe_requests(requests)
    summary["context_limit"] = asdict(context)
    summary["workers"] = result.workers.to_dict(orient="records")
    summary["kvpolicy"] = spec.kv.name if spec.kv is not None else "full"
    if cfg.backend.kind == "runtime":
        summary["runtime"] = result.engine_stats
    if result.kv:
        summary["kv"] = result.kv
        result.kv_requests.to_csv(run_dir / "kv_requests.csv", index=False)
    result.workers.to_csv(run_dir / "workers.csv", index=False)
    note = rejection_summary(result.requests)
    if note is not None:
        summary["rejections"] = note
    save_run(run_dir, result.requests, summary, result.kv_usage, metadata)
    if note is not None:
        print(f"tessera: {note}", file=sys.stderr)
    workers, stages = cfg.cluster.num_workers, f" x PP {cfg.cluster.pp}" if cfg.cluster.pp > 1 else ""
    title = (f"{cfg.experiment} ({summary['kvpolicy']} KV): {spec.model.name} on {workers} worker"
             f"{'s' if workers > 1 else ''} of {cfg.cluster.tp}{stages} x {spec.gpu.name}, workload "
             f"{spec.workload.get('name', spec.workload.get('kind'))}, {cfg.backend.kind}/{spec.cost_kind} costs")
    if cfg.backend.kind == "runtime":
        title = (f"{cfg.experiment} ({summary['kvpolicy']} KV): {result.model_name} on the runtime "
                 f"({result.workers['gpu'].iloc[0]}), workload {spec.workload.get('name', spec.workload.get('kind'))}, "
                 "measured")
    if cfg.output.figures:
        latency_cdf_figure(result.requests, run_dir / "latency_cdf.png", title)
    if cfg.output.print_table:
        print(format_summary(summary, title))
        if result.kv:
            kv = result.kv
            print(f"KV policy {summary['kvpolicy']}: PCIe H2D {kv['pcie_h2d_bytes'] / 1e9:.2f} GB, D2H "
                  f"{kv['pcie_d2h_bytes'] / 1e9:.2f} GB, {kv['num_reloads']} reloads, stall {kv['stall_s']:.2f} s, "
                  f"peak host KV {kv['peak_host_kv_bytes'] / 2**30:.1f} GiB")
        print(f"results: {run_dir}")
    return summary
