"""Experiment `flexicache_throughput`: offline throughput, FlexiCache vs vLLM (full KV), vs output length.

Paper (flexicache.md §5.3, Fig. 5): 500 requests with 10k-30k-token L-Eval prompts, fixed output
length in {50 ... 1,500}, all submitted at once, one H100-NVL; FlexiCache gives 1.38-1.55x the
output tokens/s of vLLM on Llama-3.1-8B (1.44-1.46x on Mistral-7B), the gain growing with output length.
Here prompts are uniform in [10k, 30k] (no L-Eval), costs come from the roofline model, and each
(model, output length, policy) is one simulation. Writes throughput.csv and throughput.png.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from omegaconf import DictConfig
from tqdm.auto import tqdm

from tessera.experiments.flexicache.common import (arms, ran, finish, kv_setup, params, show_table, simulate, spec_for,
                                                   workload)

PAPER_RATIO = {"Llama-3.1-8B": "1.38-1.55x", "Mistral-7B-v0.2": "1.44-1.46x"}


def describe(cfg: DictConfig) -> dict:
    """What a run of this config simulates (summary.json metadata.ran)."""
    p = params(cfg)
    return ran(cfg, arms(cfg, p, [{"name": "full"}, {"name": "flexicache"}]), p["models"]) | {"seed": cfg.seed, "num_requests": p["num_requests"]}


def run(cfg: DictConfig, run_dir: Path, metadata: dict) -> dict:
    p = params(cfg)
    policies = arms(cfg, p, [{"name": "full"}, {"name": "flexicache"}])
    rows, frames = [], []
    jobs = [(m, out, pol) for m in p["models"] for out in p["output_lengths"] for pol in policies]
    for model_name, out, pol in tqdm(jobs, desc="throughput", disable=not cfg.output.progress):
        spec = spec_for(cfg, model_name)
        requests = workload(p["num_requests"], p["prompt_tokens"], (out, out), {"kind": "burst"}, cfg.seed)
        overrides = {k: v for k, v in pol.items() if k not in ("label", "name", "rates")}
        row, frame = simulate(spec, requests, kv_setup(cfg, pol["name"], **overrides))
        rows.append({"model": model_name, "output_len": out, "policy": pol["label"], **row})
        pd.DataFrame(rows).to_csv(run_dir / "partial.csv", index=False)  # a killed sweep keeps its rows
        frames.append(frame)
    table = pd.DataFrame(rows)
    base = table[table["policy"] == policies[0]["label"]].set_index(["model", "output_len"])["out_tok_per_s"]
    table["speedup"] = [r.out_tok_per_s / base[(r.model, r.output_len)] for r in table.itertuples()]
    # the paper's band only beside full-size runs of its K = 1,024 arm (quick runs are not comparable)
    comparable = not p.get("quick")
    table["paper"] = [PAPER_RATIO.get(m, "") if comparable and pol == "FlexiCache K=1024" else ""
                      for m, pol in zip(table["model"], table["policy"])]
    cols = ["model", "output_len", "policy", "out_tok_per_s", "req_per_s", "speedup", "paper", "mean_batch",
            "preemptions", "pcie_h2d_gb", "pcie_d2h_gb", "reloads", "stall_s", "peak_host_gib", "duration_s"]
    show_table(table[cols], run_dir, "throughput", "offline throughput (output tokens/s; speedup vs vLLM)",
               cfg.output.print_table)
    if cfg.output.figures:
        figure(table, run_dir / "throughput.png", p["num_requests"])
    summary = {"table": table.to_dict(orient="records"),
               "speedup": {m: {int(r.output_len): float(r.speedup) for r in g.itertuples()
                               if r.policy != policies[0]["label"]} for m, g in table.groupby("model")}}
    return finish(run_dir, summary, metadata, frames)


def figure(table: pd.DataFrame, path: Path, num_requests: int) -> None:
    """Top: output tokens/s per policy; bottom: each non-baseline policy's speedup over the first (vLLM), with
    the paper's range shaded where the table carries it (full-size runs)."""
    models = list(dict.fromkeys(table["model"]))
    baseline = table["policy"].iloc[0]
    fig, axes = plt.subplots(2, len(models), figsize=(5.5 * len(models), 6.4), squeeze=False, sharex="col",
                             layout="constrained")
    for col, model in enumerate(models):
        top, bottom = axes[0][col], axes[1][col]
        sub = table[table["model"] == model]
        for i, (policy, g) in enumerate(sub.groupby("policy", sort=False)):
            top.plot(g["output_len"], g["out_tok_per_s"], marker="osD^v"[i % 5], color=f"C{i}", label=policy)
            if policy != baseline:
                bottom.plot(g["output_len"], g["speedup"], marker="osD^v"[i % 5], color=f"C{i}", label=policy)
        bottom.axhline(1.0, color="C0", lw=1, ls="--", label=f"{baseline} (= 1)")
        paper = [v for v in sub.get("paper", pd.Series(dtype=str)).dropna() if isinstance(v, str) and v]
        if paper:
            lo, hi = (float(x) for x in paper[0].rstrip("x").split("-"))
            bottom.axhspan(lo, hi, color="gray", alpha=0.2, label=f"paper {paper[0]}")
        top.set_title(f"{model}: {num_requests} requests, prompts 10k-30k")
        top.set_ylabel("output tokens / s")
        bottom.set_ylabel(f"speedup over {baseline} (x)")
        bottom.set_xlabel("output length (tokens)")
        for ax in (top, bottom):
            ax.grid(alpha=0.3)
        top.legend(fontsize=9, loc="upper left")
        bottom.legend(fontsize=9, loc="best")
    fig.savefig(path, dpi=120)
    plt.close(fig)
