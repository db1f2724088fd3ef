"""Experiment `flexicache_online`: online serving under Poisson arrivals, FlexiCache vs vLLM (full KV).

Paper (flexicache.md §5.4, Fig. 6): 500 requests, 10k-30k-token L-Eval prompts, outputs uniform in
[20, 2,000] (EOS ignored), Poisson arrivals at 0.2-0.6 req/s; mean TPOT at 0.4 req/s is 34.6 ms with
K = 1,024 and 44.9 ms with K = 2,048 vs 71.5 ms for vLLM; TTFT similar up to ~0.35 req/s, beyond which
vLLM's queueing blows up. Here prompts are uniform in [10k, 30k] (no L-Eval) and costs are roofline.
A policy entry may carry `rates` to run only at some rates. Writes online.csv and online.png.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from omegaconf import DictConfig
from tqdm.auto import tqdm

from tessera.experiments.flexicache.common import finish, kv_setup, params, show_table, simulate, spec_for, workload

PAPER_TPOT_MS = {("vLLM", 0.4): 71.5, ("FlexiCache K=1024", 0.4): 34.6, ("FlexiCache K=2048", 0.4): 44.9}


def run(cfg: DictConfig, run_dir: Path, metadata: dict) -> dict:
    p = params(cfg)
    jobs = [(m, rate, pol) for m in p["models"] for pol in p["policies"] for rate in p["rates"]
            if rate in pol.get("rates", p["rates"])]
    rows, frames = [], []
    for model_name, rate, pol in tqdm(jobs, desc="online", disable=not cfg.output.progress):
        spec = spec_for(cfg, model_name)
        requests = workload(p["num_requests"], p["prompt_tokens"], p["output_tokens"],
                            {"kind": "poisson", "rate": rate}, cfg.seed)
        overrides = {k: v for k, v in pol.items() if k not in ("label", "name", "rates")}
        row, frame = simulate(spec, requests, kv_setup(cfg, pol["name"], **overrides))
        paper = PAPER_TPOT_MS.get((pol["label"], rate)) if model_name.startswith("Llama-3.1") else None
        rows.append({"model": model_name, "rate": rate, "policy": pol["label"], **row, "paper_tpot_mean_ms": paper})
        pd.DataFrame(rows).to_csv(run_dir / "partial.csv", index=False)  # a killed sweep keeps its rows
        frames.append(frame)
    table = pd.DataFrame(rows)
    cols = ["model", "rate", "policy", "ttft_mean_ms", "ttft_p99_ms", "tpot_mean_ms", "tpot_p99_ms",
            "paper_tpot_mean_ms", "mean_batch", "preemptions", "reloads", "stall_s", "pcie_h2d_gb", "pcie_d2h_gb",
            "peak_host_gib"]
    show_table(table[cols], run_dir, "online", "online serving (Poisson arrivals)", cfg.output.print_table)
    if cfg.output.figures:
        figure(table, run_dir / "online.png")
    return finish(run_dir, {"table": table.to_dict(orient="records")}, metadata, frames)


def figure(table: pd.DataFrame, path: Path) -> None:
    models = list(dict.fromkeys(table["model"]))
    fig, axes = plt.subplots(len(models), 2, figsize=(11, 3.6 * len(models)), squeeze=False)
    for row, model in zip(axes, models):
        sub = table[table["model"] == model]
        for policy, g in sub.groupby("policy", sort=False):
            for ax, col in zip(row, ("ttft", "tpot")):
                line, = ax.plot(g["rate"], g[f"{col}_mean_ms"], marker="o", label=f"{policy} mean")
                ax.plot(g["rate"], g[f"{col}_p99_ms"], ls="--", color=line.get_color(), label=f"{policy} p99")
        for ax, col in zip(row, ("TTFT", "TPOT")):
            ax.set_yscale("log")
            ax.set_xlabel("request rate (req/s)")
            ax.set_ylabel(f"{col} (ms)")
            ax.set_title(f"{model}: {col}")
            ax.grid(alpha=0.3)
        row[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
