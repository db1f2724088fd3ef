"""Fidelity benchmark: simulate every measured configuration of data/validation/ and print the errors.

Per source, split (fitted / held-out), metric and TP degree: median absolute % error and signed mean % error,
for the matching engine profile and for the plain simulator (tessera_default). `--fit` / `--fit-vllm` redo the
grid searches that fixed the trtllm / vllm_v0_multistep profiles' constants, on the fitted rows only;
`--fit-control` redoes vllm_v0_eager's constants on vLLM PR #2221's before / after run (fidelity_fits.py).
The sources are simulated in fidelity_sources.py.

    .venv/bin/python benchmarks/fidelity.py [--fit | --fit-vllm | --fit-control] [--quick]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling modules, also when imported by a test
from fidelity_fits import fit_control, fit_trtllm, fit_vllm_multistep  # noqa: E402
from fidelity_sources import (bench_rows, flexicache_rows, lambda_rows, load_profile, mixtral_pr_rows,  # noqa: E402
                              mlc_rows, nemo_rows, pr2192_rows, qwen2_rows, splitwise_rows, trtllm_perf_rows,
                              qwen3_moe_pr23151_rows, sglang_issue5938_rows, trtllm_static_rows,
                              vllm_v1_serving_rows)


# Sources whose engine is not stated, and whose rows show an engine unlike the profile simulating them (SOURCE.md)
ENGINE_NOT_STATED = {"splitwise_perf_model"}


def error_table(rows: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    err = (rows["predicted"] - rows["measured"]) / rows["measured"] * 100
    rows = rows.assign(abs_err=err.abs(), err=err)
    return rows.groupby(by).agg(n=("err", "size"), median_abs_pct=("abs_err", "median"),
                                signed_mean_pct=("err", "mean")).round(1)


def run_all(quick: bool) -> pd.DataFrame:
    frames = []
    default = load_profile("tessera_default")
    for label, nemo_profile, flexi_profile, lambda_profile, splitwise_profile, v1_profile, sglang_profile in (
            ("engine profile", load_profile("trtllm"), load_profile("vllm_v1_cudagraph", attention_backend="triton"),
             load_profile("vllm_v0_multistep"), load_profile("vllm_v0_eager"), load_profile("vllm_v1_cudagraph"),
             load_profile("sglang")),
            ("tessera_default", default, default, default, default, default, default)):
        rows = (bench_rows(nemo_profile) + nemo_rows(nemo_profile) + trtllm_perf_rows(nemo_profile)
                + trtllm_static_rows(nemo_profile)
                + flexicache_rows(flexi_profile, 100 if quick else None) + lambda_rows(lambda_profile)
                + splitwise_rows(splitwise_profile) + pr2192_rows(splitwise_profile) + mlc_rows(splitwise_profile)
                + qwen2_rows(splitwise_profile) + mixtral_pr_rows(splitwise_profile)
                + vllm_v1_serving_rows(v1_profile) + qwen3_moe_pr23151_rows(v1_profile)
                + sglang_issue5938_rows(sglang_profile))
        frames.append(pd.DataFrame(rows).assign(profile=label))
    return pd.concat(frames, ignore_index=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fit", action="store_true", help="redo the trtllm profile's grid search and stop")
    parser.add_argument("--fit-vllm", action="store_true", help="redo the vllm_v0_multistep grid search and stop")
    parser.add_argument("--fit-control", action="store_true",
                        help="redo vllm_v0_eager's control_per_token_s fit on vLLM PR #2221 and stop")
    parser.add_argument("--quick", action="store_true", help="100 instead of 500 requests for the online source")
    args = parser.parse_args()
    if args.fit:
        fit_trtllm()
        return
    if args.fit_vllm:
        fit_vllm_multistep()
        return
    if args.fit_control:
        fit_control()
        return
    start = time.perf_counter()
    rows = run_all(args.quick)
    pd.set_option("display.width", 160)
    print("Per source, split and metric (error = (simulated - measured) / measured):")
    print(error_table(rows, ["profile", "source", "split", "metric"]).to_string())
    print("\nPer source and TP degree:")
    print(error_table(rows, ["profile", "source", "split", "metric", "tp"]).to_string())
    held_out = rows[(rows["split"] == "held_out") & (rows["profile"] == "engine profile")]
    print("\nHeld-out rows of the engine profiles per model, GPU and TP degree:")
    print(error_table(held_out, ["source", "metric", "model", "gpu", "tp"]).to_string())
    print("\nOverall:")
    print(error_table(rows, ["profile", "split", "metric"]).to_string())
    stated = held_out[~held_out["source"].isin(ENGINE_NOT_STATED)]
    print(f"\nHeld-out rows of the sources that state their engine (all but {', '.join(sorted(ENGINE_NOT_STATED))}: "
          "its SOURCE.md), engine profiles:")
    print(error_table(stated, ["metric"]).to_string())
    print(f"\n{len(rows) // 2} measurements per profile, {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
