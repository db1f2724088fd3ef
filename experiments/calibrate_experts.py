"""calibrate_runtime extended to MoA experts: step costs measured on every Ray worker, fitted per model folder.

profile_worker runs inside a worker actor (its own device and threads): machine numbers, one layer's op
times and calibrate_runtime's engine-step sweep for one checkpoint, and the checkpoint's load time. The driver
pools every worker's steps (measured while all workers run at once, as in the real stages) and fits one
Calibration per model folder (tessera/cost/calibration.py, wall-clock fit). expert_costs turns a fit, a
measured load time and a measured output length into the placer's MeasuredExpertCosts.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from statistics import median

import numpy as np
import pandas as pd

from tessera.cost.calibration import Calibration, fit_calibration
from tessera.experiments.calibrate_runtime import cpu_spec
from tessera.interface import BatchShape
from tessera.placement.measured import MeasuredExpertCosts
from tessera.types import ModelSpec

DECODE_BATCHES = (1, 2, 4, 8, 16)
FULL_SWEEP = dict(prefill_tokens=(16, 64, 128, 256, 512), batches=(1, 2, 4, 8), contexts=(64, 256), decode_steps=4)
# MoA stages decode larger batches than FULL_SWEEP's (a replica takes all its prompts at once) and the placer reads
# the fit up to DECODE_BATCHES[-1]: sweep them too, at the short context only (prefilling 24 x 256 tokens on a
# CPU worker would take ~15 s)
WIDE_SWEEP = dict(prefill_tokens=(), batches=(16, 24), contexts=(64,), decode_steps=4)
FULL_OP_TOKENS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
QUICK_OP_TOKENS = (1, 4, 16, 64, 256)
QUICK_SWEEP = dict(prefill_tokens=(32, 128), batches=(1, 3), contexts=(64,), decode_steps=3)


@dataclass
class WorkerProfile:
    """One worker's measurements of one checkpoint."""

    worker: int
    model_folder: str
    spec: ModelSpec
    machine: dict
    ops: pd.DataFrame
    steps: pd.DataFrame
    load_s: float


def profile_worker(worker: int, model_folder: str, max_num_seqs: int, max_num_batched_tokens: int, kv_gib: float,
                   quick: bool, seed: int, dtype: str | None = None) -> WorkerProfile:
    """Runs in the worker's process (ExpertWorker.call): measure one checkpoint on this worker's device, in the
    dtype the worker serves it in (None: the checkpoint's)."""
    from tessera.experiments.calibrate_runtime_steps import layer_op_times, machine_numbers, step_sweep
    from tessera.runtime.engine import Engine, EngineConfig, model_spec

    config = EngineConfig(max_num_seqs=max_num_seqs, max_num_batched_tokens=max_num_batched_tokens,
                          device_kv_gib=kv_gib, seed=seed, check_invariants=False)
    t0 = time.perf_counter()
    engine = Engine.from_checkpoint(model_folder, config, device="auto", dtype=dtype)
    load_s = time.perf_counter() - t0
    device = engine.device
    machine = machine_numbers(matmul_n=512, copy_mib=64, device=device) if quick else machine_numbers(device=device)
    ops = layer_op_times(engine.model, tokens=QUICK_OP_TOKENS if quick else FULL_OP_TOKENS)
    make = lambda: Engine(engine.model, engine.tokenizer, config, name=engine.name, eos_ids=engine.eos_ids)  # noqa: E731
    steps = step_sweep(make, seed=seed + worker, **(QUICK_SWEEP if quick else FULL_SWEEP))
    if not quick:
        steps = pd.concat([steps, step_sweep(make, seed=seed + worker, **WIDE_SWEEP)], ignore_index=True)
    steps = steps.assign(worker=worker)
    spec = model_spec(engine.model, engine.name)
    return WorkerProfile(worker, model_folder, spec, machine, ops.assign(worker=worker), steps, load_s)


OPS_SCALES = tuple(float(x) for x in np.geomspace(0.1, 1.5, 16)) + (1.0,)
OPS_SCALE_TOLERANCE = 0.01  # mean |relative step error| within which fits count as equally good


def fit_folder(profiles: list[WorkerProfile], stage_steps: pd.DataFrame | None = None) -> Calibration:
    """One Calibration from every worker's profile of the same checkpoint (pooled steps, median op times), plus
    `stage_steps`: steps of the same checkpoint timed while serving real prompts (the MoA validation draw), so
    the fit is anchored where the stages run, not only on the sweep's grid.

    The fit adds non-negative terms to the layer-op profile, so op times measured while the machine was busier
    than during the step sweep (a shared machine) make every step too slow, and the fit cannot take it back.
    The steps are the ground truth: the op profile is scaled by each of OPS_SCALES (1 included) and fitted.
    The op profile and the fit's per-step and per-token terms are nearly collinear on a CPU, so the error is
    often flat over the grid; of the fits within OPS_SCALE_TOLERANCE of the best, the one whose scale is
    closest to 1 is kept (the measured profile unless scaling it clearly helps). fit["ops_scale"] says which.
    """
    first = profiles[0]
    steps = pd.concat([p.steps for p in profiles] + ([stage_steps] if stage_steps is not None else []),
                      ignore_index=True)
    ops = pd.concat([p.ops for p in profiles]).groupby("num_tokens", as_index=False)[["time_ms", "cpu_ms"]].median()
    machine = {**first.machine, "workers_profiled": [p.worker for p in profiles]}
    served = 0 if stage_steps is None else len(stage_steps)
    sources = {"machine": machine, "steps": "Engine.step wall time, step_sweep on every worker at once"
               + (f", plus {served} steps serving the validation draw" if served else ""),
               "profile": "layer_op_times on every worker, median per token count"}
    fits = []
    for scale in OPS_SCALES:
        calib, _ = fit_calibration(steps, ops.assign(time_ms=ops["time_ms"] * scale), first.spec,
                                   cpu_spec(first.machine), sources)
        fits.append((calib.fit["step_relative_error"]["mean_abs"], scale, calib))
    best = min(err for err, _, _ in fits)
    _, scale, calib = min((f for f in fits if f[0] <= best + OPS_SCALE_TOLERANCE),
                          key=lambda f: abs(np.log(f[1])))
    calib.fit["ops_scale"] = scale
    calib.fit["ops_scale_errors"] = {f"{s:.3g}": round(err, 4) for err, s, _ in fits}
    calib.fit["load_s_per_worker"] = [p.load_s for p in profiles]
    return calib


def pooled_steps(profiles: list[WorkerProfile]) -> pd.DataFrame:
    """Every worker's measured steps of one checkpoint (saved beside the results for the post-mortem)."""
    return pd.concat([p.steps.assign(model_folder=p.model_folder) for p in profiles], ignore_index=True)


def expert_costs(expert: str, kind: str, calib: Calibration, spec: ModelSpec, load_s: float,
                 mean_prompt_tokens: float, mean_output_tokens: float, max_output_tokens: int) -> MeasuredExpertCosts:
    """The placer's view of one expert: the fit's prefill and decode times at the expert's measured lengths."""
    cost = calib.cost_model(spec)
    n = max(1, int(round(mean_prompt_tokens)))
    prefill = cost.iteration_time(BatchShape(prefill_tokens=n, prefill_attn_pairs=n * (n + 1) / 2)) / n
    context = mean_prompt_tokens + mean_output_tokens / 2
    steps = {b: cost.iteration_time(BatchShape(decode_seqs=b, decode_kv_tokens=b * context)) for b in DECODE_BATCHES}
    return MeasuredExpertCosts(expert, kind, prefill, steps, load_s, spec.weight_bytes, spec.kv_bytes_per_token,
                               mean_output_tokens, max_output_tokens)


def median_load_s(values: list[float]) -> float:
    return float(median(values)) if values else 0.0
