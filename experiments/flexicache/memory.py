"""Experiment `flexicache_memory`: GPU KV memory of one request vs its sequence length, per policy.

Paper (flexicache.md §5.5, Fig. 10): at K = 1,024 tokens FlexiCache saves over 70% of the GPU KV of
requests of >= 20k tokens, tending to 75% (the stable heads' share). The analytic steady state
(tessera/kvcache/memory_model.py: stable heads hold K pages, unstable heads everything) is checked
against the page state machine: a RequestKV is prefilled to each length and decoded one step (its
first ranking), and its device pages are read back (`measured_kv_bytes`). Savings are shown with and
without the MinMax metadata (512 B per page per head). Writes memory.csv and memory.png.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from omegaconf import DictConfig

from tessera.experiments.flexicache.common import finish, params, show_table
from tessera.kvcache.memory_model import gpu_kv_memory_table
from tessera.models import model as model_spec
from tessera.sim.kv_setup import KVSetup, truth_head_model


def measured_device_bytes(model_name: str, policy: str, topk_tokens: int, seq_len: int) -> int:
    """Device KV bytes of a RequestKV right after its first decode step at length seq_len."""
    spec = model_spec(model_name)
    params = {"topk_pages": topk_tokens // 16} if policy in ("flexicache", "quest", "flexicache_adaptive") else {}
    if policy == "streaming":
        params = {"sink_tokens": 16, "window_tokens": topk_tokens - 16}
    plan_policy = KVSetup(policy, params).policy_for(spec)
    rk = plan_policy.new_request(0, seq_len - 1, truth_head_model(spec).behaviour(0), track_pages=False)
    rk.on_prefill_done()
    rk.on_decode_step()
    return rk.device_pages * plan_policy.plan.geometry.page_bytes


def describe(cfg: DictConfig) -> dict:
    """What a run of this config computes (summary.json metadata.ran): analytic, from params only."""
    return {"params": params(cfg)}


def run(cfg: DictConfig, run_dir: Path, metadata: dict) -> dict:
    p = params(cfg)
    k = int(p["topk_tokens"])
    table = gpu_kv_memory_table(models=tuple(p["models"]), seq_lens=tuple(p["seq_lens"]), topk_tokens=k,
                                policies=tuple(p["policies"]))
    table["measured_kv_bytes"] = [measured_device_bytes(r.model, r.policy, k, r.seq_len) for r in table.itertuples()]
    table["measured_saving_kv_only"] = 1 - table["measured_kv_bytes"] / table["full_kv_bytes"]
    table["kv_gib"] = table["kv_bytes"] / 2**30
    table["minmax_gib"] = table["minmax_bytes"] / 2**30
    paper = {20_000: ">70% (K=1024, FlexiCache)"}
    comparable = not p.get("quick") and k == 1024  # the paper's numbers are for full runs at K = 1,024
    table["paper"] = [paper.get(r.seq_len, "asymptote 75%" if r.seq_len == max(p["seq_lens"]) else "")
                      if r.policy == "flexicache" and comparable else "" for r in table.itertuples()]
    cols = ["model", "policy", "seq_len", "kv_gib", "minmax_gib", "saving_kv_only", "saving_with_minmax",
            "measured_saving_kv_only", "paper"]
    show_table(table[cols], run_dir, "memory", f"GPU KV memory per request (K = {k} tokens)", cfg.output.print_table)
    if cfg.output.figures:
        figure(table, run_dir / "memory.png", k, paper_marks=comparable)
    fc = table[(table["policy"] == "flexicache")]
    summary = {"topk_tokens": k, "flexicache_saving": {
        m: {int(r.seq_len): {"kv_only": float(r.saving_kv_only), "with_minmax": float(r.saving_with_minmax)}
            for r in g.itertuples()} for m, g in fc.groupby("model")},
        "max_measured_vs_analytic_gap": float((table["measured_saving_kv_only"] - table["saving_kv_only"]).abs().max())}
    return finish(run_dir, summary, metadata)


def figure(table: pd.DataFrame, path: Path, k: int, paper_marks: bool = True) -> None:
    models = list(dict.fromkeys(table["model"]))
    table = table[table["policy"] != "full"]  # saves 0% by definition: the axis is relative to it
    policies = list(dict.fromkeys(table["policy"]))
    fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4.6), squeeze=False, layout="constrained")
    for ax, model in zip(axes[0], models):
        for policy, g in table[table["model"] == model].groupby("policy", sort=False):
            # policies that save the same share overlap: a marker of its own and a shrinking size keep each visible
            i = policies.index(policy)
            style = {"marker": "osD^vP"[i % 6], "ms": max(8 - 0.8 * i, 3), "color": f"C{i}"}
            ax.plot(g["seq_len"], 100 * g["saving_kv_only"], label=policy, **style)
            if g["minmax_bytes"].any():
                ax.plot(g["seq_len"], 100 * g["saving_with_minmax"], ls="--", mfc="none", label=f"{policy} + MinMax",
                        **style)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(plt.LogLocator(subs=(1, 2, 5)))
        ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v / 1000:g}k"))
        ax.xaxis.set_minor_formatter(plt.NullFormatter())
        ax.axhline(75, color="gray", lw=0.8, ls=":")
        ax.text(0.01, 75, "75%: the stable heads' share", transform=ax.get_yaxis_transform(), va="bottom",
                fontsize=8, color="gray")
        if paper_marks:
            ax.axvline(20_000, color="gray", lw=0.8, ls=":")
            ax.text(20_000, 0.2, "paper: FlexiCache \nsaves >70% at 20k ", transform=ax.get_xaxis_transform(),
                    ha="right", fontsize=8, color="gray")
        ax.set_xlabel("sequence length (tokens)")
        ax.set_ylabel("GPU KV saved vs full KV (%)")
        ax.set_title(f"{model}, K = {k} tokens")
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=max(min(len(labels), 5), 1), fontsize=9)
    fig.savefig(path, dpi=120)
    plt.close(fig)
