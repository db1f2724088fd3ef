"""The grid searches and exact fits behind the fitted engine-profile constants, each on its fitted rows only:
trtllm (--fit), vllm_v0_multistep (--fit-vllm) and vllm_v0_eager (--fit-control) of benchmarks/fidelity.py.
"""
from __future__ import annotations

import itertools
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling modules, also when imported by a test
from fidelity_sources import (PR1440_EAGER_STEP_S, PR1440_LAYERS, bench_table, lambda_rows,  # noqa: E402
                              late_2023_graphs, load_profile, pr2221_fixed_run, pr2221_row, static_batch)

from tessera.hardware import gpu as gpu_spec  # noqa: E402
from tessera.models import model as model_spec  # noqa: E402


def fit_trtllm() -> None:
    """The trtllm profile's hbm_fraction x cpu_fixed_s on the FITTED rows only: LLM-Inference-Bench's TensorRT-LLM
    static batches on two GPU generations (A100-40GB, H100), which tell a bandwidth term from a fixed one. A static
    batch's shapes do not depend on timing, so its latency is linear in cpu_fixed_s: each hbm_fraction is simulated
    once at cpu_fixed_s = 0 and every cpu_fixed_s adds iterations x cpu_fixed_s."""
    base = load_profile("trtllm")
    table = bench_table(("fitted",))
    measured = table["e2e_s"].to_numpy(float)
    best = None
    for hbm in np.arange(0.50, 1.0001, 0.025):
        profile = replace(base, hbm_fraction=round(float(hbm), 3), cpu_fixed_s=0.0, allreduce_floor_s=0.0)
        sims = [static_batch(model_spec(r.model), gpu_spec(r.gpu), int(r.tp), profile, int(r.batch_size),
                             int(r.prompt_tokens), int(r.output_tokens)) for r in table.itertuples()]
        e2e0 = np.array([e for e, _ in sims])
        iters = np.array([n for _, n in sims], dtype=float)
        for cpu_ms in np.arange(0.0, 6.001, 0.05):
            err = np.abs(e2e0 + iters * cpu_ms * 1e-3 - measured) / measured
            score = float(np.median(err) * 100)
            if best is None or score < best[0]:
                best = (score, float(hbm), float(cpu_ms), float(np.mean(err) * 100))
    print(f"best on the fitted rows ({len(table)} static batches, e2e): hbm_fraction = {best[1]:.3f}, "
          f"cpu_fixed_s = {best[2]:.2f} ms, allreduce_floor_s = 0; median |error| {best[0]:.1f}% "
          f"(mean {best[3]:.1f}%)")


def fit_vllm_multistep() -> None:
    """The vllm_v0_multistep profile's constants on the FITTED rows only (the Llama-3-8B rows of the Lambda source,
    simulated with multi-step groups of LAMBDA_SCHEDULER_STEPS): cpu_fixed_s x allreduce_floor_s by a grid search
    on median TPOT; frontend_s as the median TTFT the steps leave unexplained. For comparison (not adopted), the
    best serial frontend (frontend_serial: requests handed to the engine one at a time) on the same rows."""
    base = load_profile("vllm_v0_multistep")

    def score(profile, metric):
        rows = pd.DataFrame(lambda_rows(profile, splits=("fitted",)))
        rows = rows[rows["metric"] == metric]
        return float(((rows["predicted"] - rows["measured"]).abs() / rows["measured"]).mean() * 100)

    best = min((score(replace(base, cpu_fixed_s=cpu_ms * 1e-3, allreduce_floor_s=floor_us * 1e-6), "tpot"),
                cpu_ms, floor_us)
               for cpu_ms, floor_us in itertools.product(np.arange(0.0, 2.01, 0.1), np.arange(0.0, 40.1, 2.5)))
    print(f"best on the fitted rows (tpot): cpu_fixed_s = {best[1]:.2f} ms, "
          f"allreduce_floor_s = {best[2]:.1f} us, mean |error| {best[0]:.1f}%")
    # frontend_s does not change TPOT; it is the median TTFT the steps leave unexplained on the same fitted rows
    fitted = replace(base, cpu_fixed_s=best[1] * 1e-3, allreduce_floor_s=best[2] * 1e-6, frontend_s=0.0)
    rows = pd.DataFrame(lambda_rows(fitted, splits=("fitted",)))
    gaps = (rows.loc[rows["metric"] == "ttft", "measured"] - rows.loc[rows["metric"] == "ttft", "predicted"])
    print(f"frontend_s on the fitted rows: median TTFT gap {gaps.median():.1f} ms over {len(gaps)} rows "
          f"(range {gaps.min():.1f}-{gaps.max():.1f} ms); mean |TTFT error| with it "
          f"{score(replace(fitted, frontend_s=round(gaps.median(), 1) * 1e-3), 'ttft'):.1f}%")
    serial = min((score(replace(fitted, frontend_s=ms * 1e-3, frontend_serial=True), "ttft"), ms)
                 for ms in np.arange(0.25, 20.01, 0.25))
    print(f"not adopted: the best serial frontend, {serial[1]:.2f} ms per request, mean |TTFT error| {serial[0]:.1f}%")


def fit_control() -> None:
    """vllm_v0_eager's two constants from PR #2221's fixed run (data/validation/vllm_pr2221), each exact in one step
    because the steps do not depend on their durations (every request arrives at t = 0), so the run's time is linear
    in either constant:
    - cpu_per_seq_s: the engine after the PR (v0.2.7: CUDA graphs for decode batches up to 256, no Ray control
      cost) must take the measured time;
    - control_per_token_s: the engine before it must take the measured before - after difference longer.
    Then host_launch_per_layer_s follows from PR #1440's eager step less the step's CPU time."""
    row = pr2221_row()
    after_s, before_s = row.num_prompts / row.after_req_per_s, row.num_prompts / row.before_req_per_s
    probe = 1e-6
    after = replace(late_2023_graphs(load_profile("vllm_v0_eager")), cpu_per_seq_s=0.0, control_per_token_s=0.0)
    t0 = pr2221_fixed_run(after)
    per_seq = (after_s - t0) / ((pr2221_fixed_run(replace(after, cpu_per_seq_s=probe)) - t0) / probe)
    after = replace(after, cpu_per_seq_s=per_seq)
    t_after = pr2221_fixed_run(after)
    probe = 1e-8
    control = (before_s - after_s) / ((pr2221_fixed_run(replace(after, control_per_token_s=probe)) - t_after) / probe)
    t_before = pr2221_fixed_run(replace(after, control_per_token_s=control))
    print(f"PR #2221 fixed run (measured: after {after_s:.1f} s, before {before_s:.1f} s):")
    print(f"  cpu_per_seq_s = {per_seq:.4g} s (the engine after the PR simulates {t_after:.1f} s; without it "
          f"{t0:.1f} s)")
    print(f"  control_per_token_s = {control:.4g} s per token per worker (the engine before the PR simulates "
          f"{t_before:.1f} s)")
    host = (PR1440_EAGER_STEP_S - after.cpu_fixed_s - per_seq) / PR1440_LAYERS
    print(f"  host_launch_per_layer_s = {host:.6g} s (PR #1440: ({PR1440_EAGER_STEP_S * 1e3:.1f} ms - "
          f"{after.cpu_fixed_s * 1e3:.1f} ms - {per_seq * 1e3:.3f} ms) / {PR1440_LAYERS} layers)")
