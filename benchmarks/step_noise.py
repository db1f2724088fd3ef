"""Machine noise under the runtime's step times: the same batch served again and again in one process.

A fresh engine per repetition serves the same prompts with the same sampling; every repetition prints the median
time of its full-batch decode steps. On a quiet dedicated machine the column is flat; the spread is what no
calibration of step costs can predict (docs/mosaic_runtime.md, "Why, measured").
Run: .venv/bin/python benchmarks/step_noise.py [--repeats 14] [--batch 12] [--prompt 150] [--output 24] [--threads 1]
"""
from __future__ import annotations

import argparse
import gc
import statistics
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/smollm2-135m-instruct", help="checkpoint folder (make smollm2)")
    parser.add_argument("--repeats", type=int, default=14)
    parser.add_argument("--batch", type=int, default=12)
    parser.add_argument("--prompt", type=int, default=150, help="prompt tokens per request")
    parser.add_argument("--output", type=int, default=24, help="output tokens per request")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()

    import torch

    from tessera.experiments.calibrate_runtime_steps import StepRecorder
    from tessera.runtime.engine import Engine, EngineConfig
    from tessera.runtime.sequence import SamplingParams

    torch.set_num_threads(args.threads)
    config = EngineConfig(max_num_seqs=256, max_num_batched_tokens=2048, device_kv_gib=0.25, seed=0,
                          check_invariants=False)
    rng = np.random.default_rng(0)
    prompts = [rng.integers(0, 250, args.prompt).tolist() for _ in range(args.batch)]
    print(f"{args.model}: batch {args.batch} x {args.prompt}-token prompts, {args.output} output tokens, "
          f"{args.threads} thread(s); median decode step per repetition (ms)")
    medians, t0 = [], time.perf_counter()
    for rep in range(args.repeats):
        engine = Engine.from_checkpoint(args.model, config, device="cpu")
        recorder = StepRecorder(engine)
        for i, p in enumerate(prompts):
            engine.add_request(p, SamplingParams(max_tokens=args.output, ignore_eos=True, temperature=0.7, seed=i),
                               arrival_s=0.0)
        engine.run()
        frame = recorder.frame()
        full = frame[(frame["prefill_tokens"] == 0) & (frame["decode_seqs"] == args.batch)]
        medians.append(float(full["time_s"].median()) * 1e3)
        print(f"{rep:>3} {time.perf_counter() - t0:7.1f} s {medians[-1]:8.1f}", flush=True)
        del engine, recorder
        gc.collect()
    lo, hi, mid = min(medians), max(medians), statistics.median(medians)
    print(f"median of medians {mid:.1f} ms, range {lo:.1f}-{hi:.1f} ms ({(hi - lo) / mid:.0%} of the median)")


if __name__ == "__main__":
    main()
