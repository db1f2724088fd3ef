"""Experiment `flexicache_sensitivity`: FlexiCache's two knobs, unstable fraction x rerank interval R.

For each unstable fraction the unstable heads are the most unstable ones of the model's simulated head
population (lowest typical keep probability: what profiling that population would find; at 25% on
Llama-3.1-8B this is the paper's shipped list); the other heads are offloaded and reranked every R
steps. Offline workload (burst, prompts uniform 10k-30k, fixed output length). Reports PCIe bytes per
direction, reload stall time and output throughput (vs vLLM). The paper's Table 6 reports only
accuracy retention for this grid (0.9932 at 25%/R=16 down to 0.9628 at 6.25%/R=32); accuracy is not
simulated here. Writes sensitivity.csv and sensitivity.png.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from omegaconf import DictConfig
from tqdm.auto import tqdm

from tessera.experiments.flexicache.common import (finish, kv_setup, params, ran, show_table, simulate, spec_for,
                                                   workload)
from tessera.sim.kv_setup import truth_head_model


def most_unstable_heads(model, fraction: float) -> list[list[int]]:
    keep = truth_head_model(model).typical_keep_prob()
    count = int(round(fraction * keep.size))
    flat = np.argsort(keep.ravel(), kind="stable")[:count]
    return [[int(i // keep.shape[1]), int(i % keep.shape[1])] for i in flat]


def describe(cfg: DictConfig) -> dict:
    """What a run of this config simulates (summary.json metadata.ran)."""
    p = params(cfg)
    base = ran(cfg, [{"name": "full", "label": "vLLM"}, {"name": "flexicache", "label": "FlexiCache",
                                                        "topk_pages": p["topk_pages"]}], [p["model"]])
    return base | {"params": p, "seed": cfg.seed}


def run(cfg: DictConfig, run_dir: Path, metadata: dict) -> dict:
    p = params(cfg)
    spec = spec_for(cfg, p["model"])
    requests = workload(p["num_requests"], p["prompt_tokens"], (p["output_len"],) * 2, {"kind": "burst"}, cfg.seed)
    base, _ = simulate(spec, requests, None)
    rows = []
    grid = [(f, r) for f in p["unstable_fractions"] for r in p["rerank_intervals"]]
    for fraction, interval in tqdm(grid, desc="sensitivity", disable=not cfg.output.progress):
        kv = kv_setup(cfg, "flexicache", topk_pages=p["topk_pages"], rerank_interval=interval,
                      unstable_fraction=fraction, unstable_heads=most_unstable_heads(spec.model, fraction))
        row, _ = simulate(spec, requests, kv)
        rows.append({"unstable_pct": 100 * fraction, "R": interval, **row,
                     "speedup_vs_vllm": row["out_tok_per_s"] / base["out_tok_per_s"]})
    table = pd.DataFrame(rows)
    table["stall_per_request_ms"] = table["stall_s"] / table["finished"] * 1e3
    cols = ["unstable_pct", "R", "pcie_h2d_gb", "pcie_d2h_gb", "h2d_busy_s", "reloads", "stall_s",
            "stall_per_request_ms", "out_tok_per_s", "speedup_vs_vllm", "mean_batch", "preemptions"]
    show_table(table[cols], run_dir, "sensitivity", f"sensitivity: {spec.model.name}, {p['num_requests']} requests, "
               f"output {p['output_len']}, vLLM {base['out_tok_per_s']:.0f} tok/s", cfg.output.print_table)
    if cfg.output.figures:
        figure(table, run_dir / "sensitivity.png")
    return finish(run_dir, {"table": table.to_dict(orient="records"), "vllm_out_tok_per_s": base["out_tok_per_s"]},
                  metadata)


def figure(table: pd.DataFrame, path: Path) -> None:
    panels = (("pcie_h2d_gb", "PCIe host-to-device traffic", "H2D bytes, all requests (GB)"),
              ("stall_s", "reload stall", "stall summed over requests (s)"),
              ("speedup_vs_vllm", "output throughput", "output tokens/s vs vLLM (x)"))
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2), layout="constrained")
    intervals = sorted(table["R"].unique())
    for ax, (col, title, unit) in zip(axes, panels):
        for i, (pct, g) in enumerate(table.groupby("unstable_pct")):
            ax.plot(g["R"], g[col], marker="osD^v"[i % 5], color=f"C{i}", label=f"{pct:g}% of heads unstable")
        ax.set_xscale("log", base=2)
        ax.set_xticks(intervals, [f"{r:g}" for r in intervals])
        ax.xaxis.set_minor_locator(plt.NullLocator())
        ax.set_xlabel("rerank interval R of the stable heads (steps)")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), fontsize=9)
    fig.suptitle("FlexiCache sensitivity: share of unstable heads (reranked every step) x rerank interval R")
    fig.savefig(path, dpi=120)
    plt.close(fig)
