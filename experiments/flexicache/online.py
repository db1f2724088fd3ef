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

from tessera.experiments.flexicache.common import (arms, finish, kv_setup, params, ran, show_table, simulate,
                                                   spec_for, workload)

PAPER_TPOT_MS = {("vLLM", 0.4): 71.5, ("FlexiCache K=1024", 0.4): 34.6, ("FlexiCache K=2048", 0.4): 44.9}


def describe(cfg: DictConfig) -> dict:
    """What a run of this config simulates (summary.json metadata.ran)."""
    p = params(cfg)
    return ran(cfg, arms(cfg, p, []), p["models"]) | {"seed": cfg.seed, "num_requests": p["num_requests"]}


def run(cfg: DictConfig, run_dir: Path, metadata: dict) -> dict:
    p = params(cfg)
    policies = arms(cfg, p, [])
    jobs = [(m, rate, pol) for m in p["models"] for pol in policies for rate in p["rates"]
            if rate in pol.get("rates", p["rates"])]
    rows, frames = [], []
    for model_name, rate, pol in tqdm(jobs, desc="online", disable=not cfg.output.progress):
        spec = spec_for(cfg, model_name)
        requests = workload(p["num_requests"], p["prompt_tokens"], p["output_tokens"],
                            {"kind": "poisson", "rate": rate}, cfg.seed)
        overrides = {k: v for k, v in pol.items() if k not in ("label", "name", "rates")}
        row, frame = simulate(spec, requests, kv_setup(cfg, pol["name"], **overrides))
        comparable = model_name.startswith("Llama-3.1") and not p.get("quick")  # quick runs are not comparable
        paper = PAPER_TPOT_MS.get((pol["label"], rate)) if comparable else None
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
    """Per model: TTFT and TPOT (mean solid, p99 dashed) vs arrival rate, one marker per policy, so a policy
    run at a single rate still shows; the paper's mean TPOT points where the table carries them."""
    models = list(dict.fromkeys(table["model"]))
    policies = list(dict.fromkeys(table["policy"]))
    fig, axes = plt.subplots(len(models), 2, figsize=(11, 3.4 * len(models) + 0.8), squeeze=False,
                             layout="constrained")
    for row, model in zip(axes, models):
        sub = table[table["model"] == model]
        for policy, g in sub.groupby("policy", sort=False):
            # equal series would hide each other: each policy gets its own marker, later ones smaller
            i = policies.index(policy)
            style = {"marker": "osD^v"[i % 5], "ms": max(8 - 1.5 * i, 3), "color": f"C{i}"}
            for ax, col in zip(row, ("ttft", "tpot")):
                ax.plot(g["rate"], g[f"{col}_mean_ms"], label=f"{policy}: mean", **style)
                ax.plot(g["rate"], g[f"{col}_p99_ms"], ls="--", mfc="none", label=f"{policy}: p99", **style)
        paper = sub.dropna(subset=["paper_tpot_mean_ms"]) if "paper_tpot_mean_ms" in sub else sub.iloc[:0]
        if len(paper):
            row[1].scatter(paper["rate"], paper["paper_tpot_mean_ms"], marker="*", s=160, zorder=5, edgecolors="k",
                           c=[f"C{policies.index(p)}" for p in paper["policy"]])
            row[1].plot([], [], marker="*", ls="none", ms=13, mfc="white", mec="k",
                        label="paper: mean TPOT (policy's colour)")
        for ax, col in zip(row, ("TTFT", "TPOT")):
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}"))
            ax.yaxis.set_minor_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}"))
            ax.tick_params(axis="y", which="minor", labelsize=7)
            ax.set_xticks(sorted(sub["rate"].unique()))
            ax.set_xlabel("request rate (req/s)")
            ax.set_ylabel(f"{col} (ms, log scale)")
            ax.set_title(f"{model}: {col}")
            ax.grid(alpha=0.3)
    handles = {}
    for ax in axes.flat:
        for h, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, h)
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncol=min(len(handles), 4),
               fontsize=9)
    fig.savefig(path, dpi=120)
    plt.close(fig)
