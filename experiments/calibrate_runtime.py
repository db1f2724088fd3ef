"""Calibrate the simulator to this machine from the runtime, then compare both backends on one trace.

Per repeat, back to back: time one layer's ops and a sweep of engine steps (prefill sizes; batch x
context decodes), fit Calibrations (tessera/cost/calibration.py: measured CPU spec, layer profile,
roofline efficiencies), replay a Poisson trace on the runtime (measured) and on the simulator (same
requests, scheduler limits and KV capacity, full KV). The machine is shared, so every step is timed in
wall clock AND process CPU time, and the simulator runs with two fits of that repeat:
    wall      fitted to the sweep's wall-clock step times (contention during the sweep baked in);
    adjusted  fitted to the sweep's CPU times, slowed by 1 / (CPU share the runtime got during the trace).
The shipped calibration is the CPU-time fit pooled over all repeats (the machine on an idle core).
Outputs in --out:

    calibration.json, layer_profile.csv   pooled CPU-time calibration (Calibration.load(out))
    wall_clock_fit/                       pooled wall-clock calibration, same files
    steps.csv                             every measured step (sweeps and traces), BatchShape, predictions
    requests.csv                          per-request TTFT / TPOT / E2E of every run (runtime and simulator)
    comparison.csv                        simulated vs measured TTFT, TPOT, E2E (mean, p50, p90), rel. errors
    summary.json, calibration.png         CPU shares, fits, step-level errors; figure

Run:  nice -n 15 python -m tessera.experiments.calibrate_runtime --model models/tessera-tiny-byte \
          --out outputs/calibrate_runtime --repeats 3
"""
from __future__ import annotations

import argparse
import json
import platform
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from tessera.cost.calibration import Calibration, fit_calibration, predict_steps
from tessera.experiments.resolve import RunSpec
from tessera.memory import MemoryConfig
from tessera.results.schema import add_latency_columns
from tessera.scheduling import SchedulerConfig
from tessera.types import GPUSpec, ModelSpec, WorkerSpec
from tessera.workload import burst, poisson, synthetic, uniform

METRICS = ("ttft_s", "tpot_s", "e2e_s")
STATS = ("mean", "p50", "p90")
PLACEHOLDER_LINK = "PCIe-Gen4-x16"  # a catalog link name; unused with full KV (no host<->device copies)


def cpu_spec(machine: dict) -> GPUSpec:
    """This CPU (or GPU) as a GPUSpec from measured numbers (machine_numbers), NOT a catalog entry:
    hbm_bytes = physical RAM (os.sysconf; on CUDA the device's memory); hbm_bandwidth_Bps = best copy
    bandwidth of a 256 MiB fp32 tensor (read + write bytes); peak_bf16_flops = best fp32 1024^3 matmul
    FLOP/s (the model is fp32; the field name is the catalog's); both best of 5 in process CPU time (on
    CUDA wall time around a synchronize), at the torch thread count of the run."""
    if str(machine.get("device", "cpu")).startswith("cuda"):
        name = f"GPU-{(machine.get('device_name') or 'cuda').replace(' ', '-')}-measured"
        link = "PCIe-Gen5-x16"
    else:
        name, link = f"CPU-{platform.node() or 'host'}-{machine['torch_threads']}t-measured", PLACEHOLDER_LINK
    return GPUSpec(name=name, hbm_bytes=machine["ram_bytes"], hbm_bandwidth_Bps=machine["copy_bandwidth_Bps"],
                   peak_bf16_flops=machine["fp32_matmul_flops"], host_link=link, peer_link=link)


def run_spec(model: ModelSpec, gpu: GPUSpec, scheduler: SchedulerConfig, kv_bytes: float,
             calib: Calibration | None, model_path: Path | None = None) -> RunSpec:
    """One worker on `gpu` (the calibration's own spec when one is given: a slowed calibration's roofline
    runs on its slowed spec) with an explicit KV reservation, profiled costs from `calib`."""
    gpu = calib.gpu if calib is not None else gpu
    worker = WorkerSpec(worker_id=0, gpu=gpu, model=model, tp=1, kv_bytes_per_gpu=kv_bytes)
    return RunSpec(model=model, gpu=gpu, workers=(worker,), scheduler=scheduler,
                   memory=MemoryConfig(activation_reserve_gib=0.0), router="round_robin", cost_kind="profiled",
                   cost_params=calib.cost_params() if calib else {}, workload={}, kv=None, model_path=model_path)


def latency_stats(frame: pd.DataFrame) -> dict:
    lat = add_latency_columns(frame)
    lat = lat[lat["status"] == "finished"]
    out = {}
    for m in METRICS:
        v = lat[m].dropna().to_numpy(float)
        out.update({(m, "mean"): v.mean(), (m, "p50"): np.percentile(v, 50), (m, "p90"): np.percentile(v, 90)})
    return out


def comparison_table(runtime: list[dict], sims: dict[str, list[dict]], idle: dict) -> pd.DataFrame:
    """One row per (metric, stat): measured mean and CV over repeats; per simulated variant its mean and the
    relative error paired per repeat (mean, min, max); `idle`: the pooled CPU-time fit, unscaled."""
    rows = []
    for m in METRICS:
        for s in STATS:
            meas = np.array([r[(m, s)] for r in runtime])
            row = {"metric": m.removesuffix("_s"), "stat": s, "runtime_s": meas.mean(),
                   "runtime_cv": meas.std(ddof=1) / meas.mean() if len(meas) > 1 else np.nan}
            for name, runs in sims.items():
                sim = np.array([p[(m, s)] for p in runs])
                err = sim / meas - 1.0
                row.update({f"sim_{name}_s": sim.mean(), f"err_{name}": err.mean(),
                            f"err_{name}_min": err.min(), f"err_{name}_max": err.max()})
            row["sim_idle_core_s"] = idle[(m, s)]
            rows.append(row)
    return pd.DataFrame(rows)


def calibration_figure(steps: pd.DataFrame, table: pd.DataFrame, path: Path, title: str) -> None:
    """Decode sweep vs the CPU-time fit; trace steps vs the fits; trace latency, runtime vs simulator."""
    import matplotlib.pyplot as plt

    from matplotlib.ticker import ScalarFormatter

    fig, axes = plt.subplots(1, 3, figsize=(16, 5))
    dec = steps[(steps["sweep"] == "decode") & (steps["prefill_tokens"] == 0)]
    ax = axes[0]
    for c, g in dec.groupby("prompt"):
        med = g.groupby("decode_seqs")[["cpu_s", "pred_cpu_s"]].median()
        line, = ax.plot(med.index, med["cpu_s"] * 1e3, "o", label=f"measured, context {int(c)}")
        ax.plot(med.index, med["pred_cpu_s"] * 1e3, "-", color=line.get_color(), label=f"fit, context {int(c)}")
    ax.set_xlabel("decode batch size (sequences)")
    ax.set_ylabel("step CPU time (ms)")
    ax.set_title("decode steps of the sweeps: measured (median) vs CPU-time fit", fontsize=10)
    ax.legend(fontsize=8)
    ax = axes[1]
    trace = steps[steps["source"] == "trace"]
    for col, label, color in (("pred_wall_s", "wall-clock fit", "tab:orange"),
                              ("pred_adjusted_s", "CPU-time fit / trace CPU share", "tab:green")):
        ax.scatter(trace["time_s"] * 1e3, trace[col] * 1e3, s=5, alpha=0.35, color=color, label=label)
    lim = [0, float(trace["time_s"].quantile(0.99) * 1e3 * 1.1)] if len(trace) else [0, 1]
    ax.plot(lim, lim, "k--", lw=0.8)
    ax.set_xlim(lim)
    ax.set_ylim(lim)
    ax.set_xlabel("measured step time in the trace (ms)")
    ax.set_ylabel("cost model (ms)")
    ax.set_title("every step of the trace: cost model vs measured (dashed: equal)", fontsize=10)
    ax.legend(fontsize=8, markerscale=3)
    ax = axes[2]
    x = np.arange(len(table))
    ax.bar(x - 0.3, table["runtime_s"] * 1e3, 0.2, yerr=table["runtime_s"] * table["runtime_cv"].fillna(0) * 1e3,
           label="runtime (mean of repeats, +-1 sd)")
    ax.bar(x - 0.1, table["sim_wall_s"] * 1e3, 0.2, label="sim, wall-clock fit")
    ax.bar(x + 0.1, table["sim_adjusted_s"] * 1e3, 0.2, label="sim, CPU-time fit / trace CPU share")
    ax.bar(x + 0.3, table["sim_idle_core_s"] * 1e3, 0.2, label="sim, CPU-time fit (an idle core)")
    ax.set_xticks(x, [f"{m} {s}" for m, s in zip(table["metric"], table["stat"])], rotation=45, fontsize=8)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.set_ylabel("latency (ms, log scale)")
    ax.set_title("trace latency, runtime vs simulator", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--num-requests", type=int, default=24)
    p.add_argument("--rate", type=float, default=1.0, help="Poisson arrivals per second")
    p.add_argument("--prompt-tokens", type=int, nargs=2, default=(256, 1024))
    p.add_argument("--output-tokens", type=int, nargs=2, default=(32, 64))
    p.add_argument("--max-num-seqs", type=int, default=16)
    p.add_argument("--max-num-batched-tokens", type=int, default=512)
    p.add_argument("--device-kv-gib", type=float, default=0.25, help="the runtime's KV pool (the sim gets the same)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="a small sweep (tests)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N: where the runtime runs and is measured")
    p.add_argument("--burst", action="store_true", help="every request arrives at t = 0 (instead of Poisson at --rate)")
    p.add_argument("--kvpolicies", nargs="*", default=[],
                   help="after calibrating, also compare the trace under these KV policies (e.g. flexicache)")
    args = p.parse_args(argv)
    run_calibration(args)


def run_calibration(args) -> pd.DataFrame:
    import torch

    from tessera.experiments.backends.runtime import run_runtime
    from tessera.experiments.backends.sim import run_sim
    from tessera.experiments.calibrate_policies import policy_stage
    from tessera.experiments.calibrate_runtime_steps import StepRecorder, layer_op_times, machine_numbers, step_sweep
    from tessera.runtime.checkpoint import load_checkpoint
    from tessera.runtime.engine import Engine, EngineConfig, model_spec, resolve_device

    torch.set_num_threads(args.threads)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    model_dir = args.model.resolve()
    device = resolve_device(getattr(args, "device", "cpu"))
    model = load_checkpoint(model_dir, device=device)
    spec_model = model_spec(model, model_dir.name)
    machine = machine_numbers(matmul_n=512, copy_mib=64, device=device) if args.quick else \
        machine_numbers(device=device)
    gpu = cpu_spec(machine)
    scheduler = SchedulerConfig(block_size=16, max_num_seqs=args.max_num_seqs,
                                max_num_batched_tokens=args.max_num_batched_tokens)
    device_kv_gib = args.device_kv_gib
    engine_config = EngineConfig(max_num_seqs=args.max_num_seqs, max_num_batched_tokens=args.max_num_batched_tokens,
                                 device_kv_gib=device_kv_gib, check_invariants=False)
    kv_bytes = device_kv_gib * 2**30
    runtime_conf = {"device": str(device), "num_threads": args.threads, "device_kv_gib": device_kv_gib}
    arrivals = burst() if getattr(args, "burst", False) else poisson(args.rate)
    requests = synthetic(args.num_requests, arrivals, uniform(tuple(args.prompt_tokens), tuple(args.output_tokens)),
                         seed=args.seed)
    sweep_kw = dict(prefill_tokens=(64, 600), batches=(1, 3), contexts=(100,), decode_steps=3) if args.quick else {}
    sources = {"machine": machine, "gpu_spec": cpu_spec.__doc__.split(":", 1)[1].strip(),
               "profile": "layer_op_times: median of 7 runs of one layer's qkv + finish per token count",
               "steps": "Engine.step wall time (StepRecorder) over step_sweep's prefill and decode runs"}

    def make_engine():
        return Engine(model, None, engine_config, name=model_dir.name)

    runtime_stats, sims, frames, ops_all, fits, frames_steps = [], {"wall": [], "adjusted": []}, [], [], [], []
    for r in range(args.repeats):
        ops = layer_op_times(model).assign(repeat=r)
        sweep = step_sweep(make_engine, seed=args.seed + r, **sweep_kw).assign(source="sweep", repeat=r)
        wall, _ = fit_calibration(sweep, ops, spec_model, gpu, sources)
        cpu, _ = fit_calibration(sweep, ops.assign(time_ms=ops["cpu_ms"]), spec_model, gpu, sources, "cpu_s")
        recorders = []
        measured = run_runtime(run_spec(spec_model, gpu, scheduler, kv_bytes, None, model_dir), requests, runtime_conf,
                               {"name": "full"}, seed=args.seed, on_engine=lambda e: recorders.append(StepRecorder(e)))
        trace = recorders[0].frame().assign(source="trace", repeat=r)
        share = float(trace["cpu_s"].sum() / trace["time_s"].sum())
        adjusted = cpu.slowed(1.0 / share)
        runtime_stats.append(latency_stats(measured.requests))
        frames.append(add_latency_columns(measured.requests).assign(backend="runtime", repeat=r))
        for name, calib in (("wall", wall), ("adjusted", adjusted)):
            result = run_sim(run_spec(spec_model, gpu, scheduler, kv_bytes, calib), requests, kv=None)
            sims[name].append(latency_stats(result.requests))
            frames.append(add_latency_columns(result.requests).assign(backend=f"sim_{name}", repeat=r))
        for frame in (sweep, trace):
            frame["pred_wall_s"] = predict_steps(wall, spec_model, frame)
            frame["pred_adjusted_s"] = predict_steps(adjusted, spec_model, frame)
        ops_all.append(ops)
        steps_r = pd.concat([sweep, trace], ignore_index=True)
        fits.append({"repeat": r, "cpu_share_sweep": float(sweep["cpu_s"].sum() / sweep["time_s"].sum()),
                     "cpu_share_trace": share, "wall_fit": wall.fit["coefficients"], "cpu_fit": cpu.fit["coefficients"],
                     "wall_fit_step_error": wall.fit["step_relative_error"],
                     "cpu_fit_step_error": cpu.fit["step_relative_error"]})
        frames_steps.append(steps_r)
        print(f"repeat {r}: CPU share sweep {fits[-1]['cpu_share_sweep']:.2f}, trace {share:.2f}; CPU-time fit "
              f"{json.dumps({k: float(f'{v:.4g}') for k, v in cpu.fit['coefficients'].items()})}", flush=True)

    steps = pd.concat(frames_steps, ignore_index=True)
    ops = pd.concat(ops_all).groupby("num_tokens", as_index=False)[["time_ms", "cpu_ms"]].median()
    sweeps = steps[steps["source"] == "sweep"]
    pooled, profile_table = fit_calibration(sweeps, ops.assign(time_ms=ops["cpu_ms"]), spec_model, gpu, sources,
                                            "cpu_s")
    pooled_wall, wall_table = fit_calibration(sweeps, ops, spec_model, gpu, sources)
    pooled.fit["per_repeat"] = fits
    pooled.save(out, profile_table)
    pooled_wall.save(out / "wall_clock_fit", wall_table)
    steps["pred_cpu_s"] = predict_steps(pooled, spec_model, steps)
    steps.to_csv(out / "steps.csv", index=False)
    idle = run_sim(run_spec(spec_model, gpu, scheduler, kv_bytes, pooled), requests, kv=None)
    frames.append(add_latency_columns(idle.requests).assign(backend="sim_idle_core", repeat=-1))
    pd.concat(frames, ignore_index=True).to_csv(out / "requests.csv", index=False)
    table = comparison_table(runtime_stats, sims, latency_stats(idle.requests))
    table.to_csv(out / "comparison.csv", index=False, float_format="%.5g")

    def run_one(kv_conf):
        recorders = []
        res = run_runtime(run_spec(spec_model, gpu, scheduler, kv_bytes, None, model_dir), requests, runtime_conf,
                          kv_conf, seed=args.seed, on_engine=lambda e: recorders.append(StepRecorder(e)))
        rec = recorders[0].frame()
        return res.requests, float(rec["cpu_s"].sum() / rec["time_s"].sum())

    def sim_one(kv, share):
        return run_sim(run_spec(spec_model, gpu, scheduler, kv_bytes, pooled.slowed(1.0 / share)), requests,
                       kv=kv).requests

    policy_table = policy_stage([k for k in getattr(args, "kvpolicies", []) if k != "full"], args.repeats, run_one,
                                sim_one, latency_stats, comparison_table, out)
    trace = steps[steps["source"] == "trace"]
    summary = {"model": str(model_dir), "gpu": asdict(gpu), "requests": len(requests), "rate_per_s": args.rate,
               "repeats": fits,
               "trace_step_error_wall": _err_stats(trace["pred_wall_s"], trace["time_s"]),
               "trace_step_error_adjusted": _err_stats(trace["pred_adjusted_s"], trace["time_s"]),
               "sweep_step_error_cpu_fit_pooled": pooled.fit["step_relative_error"]}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
    title = (f"{model_dir.name} on {gpu.name}: {args.num_requests} Poisson requests at {args.rate}/s, "
             f"{args.repeats} repeat{'s' if args.repeats != 1 else ''}, full KV")
    calibration_figure(steps, table, out / "calibration.png", title)
    eff = pooled.efficiency
    print(f"shipped (pooled CPU-time) fit: overhead {eff.overhead_s * 1e3:.2f} ms/step, flops_fraction "
          f"{eff.flops_fraction:.4f}, hbm_fraction {eff.hbm_fraction:.4f}, sweep-step error "
          f"{_fmt(pooled.fit['step_relative_error'])}")
    print(f"trace-step error: wall-clock fit {_fmt(summary['trace_step_error_wall'])}; CPU-time fit / share "
          f"{_fmt(summary['trace_step_error_adjusted'])}")
    cols = ["metric", "stat", "runtime_s", "runtime_cv", "sim_wall_s", "err_wall", "err_wall_min", "err_wall_max",
            "sim_adjusted_s", "err_adjusted", "err_adjusted_min", "err_adjusted_max", "sim_idle_core_s"]
    print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    if policy_table is not None:
        print("\nKV policies (simulator on the pooled CPU-time fit / each run's CPU share):")
        print(policy_table[["kvpolicy", "metric", "stat", "runtime_s", "sim_adjusted_s", "err_adjusted",
                            "sim_idle_core_s"]].to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    print(f"results: {out}")
    return table


def _err_stats(pred: pd.Series, meas: pd.Series) -> dict:
    rel = pred / meas - 1.0
    return {"median": float(rel.median()), "mean_abs": float(rel.abs().mean()),
            "p10": float(rel.quantile(0.1)), "p90": float(rel.quantile(0.9))}


def _fmt(err: dict) -> str:
    return ", ".join(f"{k} {v:+.1%}" for k, v in err.items())


if __name__ == "__main__":
    main()
