"""Headlines of the FlexiCache experiments, read from the CSV tables they write (columns in docs/outputs.md).

Each reader picks the rows the paper states a number for; claims are attached only where the setting matches.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from tessera.experiments.reproduce import paper
from tessera.experiments.reproduce.claims import PaperClaim
from tessera.experiments.reproduce.headlines import Headline

PAPER_K_ARM = "FlexiCache K=1024"  # the arm the paper's throughput band and 34.6 ms TPOT are for
PAPER_RATE = 0.4  # req/s: the rate of the paper's TPOT numbers


def memory(run_dir: Path) -> list[Headline]:
    table = pd.read_csv(run_dir / "memory.csv")
    rows = []
    for model, g in table[table["policy"] == "flexicache"].groupby("model", sort=False):
        at = g[g["seq_len"] == 20_000]
        if len(at):
            r = at.iloc[0]
            rows.append(Headline(f"{model}: GPU KV saved at 20,000 tokens (KV only)", 100 * r.saving_kv_only, "%",
                                 paper.MEMORY_AT_20K))
            rows.append(Headline(f"{model}: GPU KV saved at 20,000 tokens with MinMax", 100 * r.saving_with_minmax,
                                 "%", paper_note="not compared: the paper's curve very likely excludes MinMax "
                                 "(docs/papers/flexicache.md §5.5)"))
        longest = g.loc[g["seq_len"].idxmax()]
        if longest.seq_len > 20_000:
            rows.append(Headline(f"{model}: GPU KV saved at {int(longest.seq_len):,} tokens (KV only)",
                                 100 * longest.saving_kv_only, "%", paper.MEMORY_ASYMPTOTE))
    return rows


def rerank_cost(run_dir: Path) -> list[Headline]:
    table = pd.read_csv(run_dir / "rerank_cost.csv")
    fast = table[table["mode"] != "all heads every step"]
    rows = []
    for r in fast.itertuples():
        if r.batch == 40 or r.batch == fast["batch"].max():
            claim = paper.RERANK_AT_40 if r.batch == 40 else None
            rows.append(Headline(f"{r.mode} over all heads every step, batch {r.batch}", r.speedup, "x", claim))
    return rows


def throughput(run_dir: Path) -> list[Headline]:
    table = pd.read_csv(run_dir / "throughput.csv")
    baseline = table["policy"].iloc[0]
    rows = []
    for r in table[table["policy"] != baseline].itertuples():
        claim = paper.throughput_band(r.model) if r.policy == PAPER_K_ARM else None
        rows.append(Headline(f"{r.model}, output {r.output_len}: {r.policy} / {baseline} output tokens/s",
                             r.speedup, "x", claim))
    return rows


def online(run_dir: Path) -> list[Headline]:
    table = pd.read_csv(run_dir / "online.csv")
    rate = PAPER_RATE if (table["rate"] == PAPER_RATE).any() else float(table["rate"].median())
    tpot = paper.online_tpot_ms()
    rows = []
    for model, g in table[table["rate"] == rate].groupby("model", sort=False):
        comparable = model.startswith("Llama-3.1")  # the paper's TPOT numbers are Llama-3.1-8B's
        by_policy = g.set_index("policy")["tpot_mean_ms"]
        baseline = g["policy"].iloc[0]
        for policy, ms in by_policy.items():
            ref = tpot.get((policy, rate)) if comparable else None
            claim = PaperClaim("value", ref, unit="ms", source=paper.ONLINE_SOURCE) if ref else None
            rows.append(Headline(f"{model} at {rate:g} req/s: {policy} mean TPOT", ms, "ms", claim))
        base_ref = tpot.get((baseline, rate)) if comparable else None
        for policy, ms in by_policy.items():
            if policy == baseline:
                continue
            ref = tpot.get((policy, rate)) if comparable else None
            claim = (PaperClaim("value", base_ref / ref, text=f"{base_ref:g} / {ref:g} = {base_ref / ref:.2f}x",
                                source=paper.ONLINE_SOURCE) if ref and base_ref else None)
            rows.append(Headline(f"{model} at {rate:g} req/s: {baseline} / {policy} mean TPOT",
                                 by_policy[baseline] / ms, "x", claim))
    return rows


def sensitivity(run_dir: Path) -> list[Headline]:
    table = pd.read_csv(run_dir / "sensitivity.csv")
    rows = []
    for r in table.itertuples():
        if (r.unstable_pct, r.R) not in ((25.0, 16), (6.25, 32)):  # the cells the paper quotes
            continue
        cell = f"{r.unstable_pct:g}% unstable, R = {r.R}"
        rows.append(Headline(f"{cell}: output tokens/s vs vLLM", r.speedup_vs_vllm, "x",
                             paper_note=paper.SENSITIVITY))
        rows.append(Headline(f"{cell}: host-to-device PCIe traffic", r.pcie_h2d_gb, "GB", paper_note="-"))
        rows.append(Headline(f"{cell}: reload stall per request", r.stall_per_request_ms, "ms", paper_note="-"))
    best = table.loc[table["speedup_vs_vllm"].idxmax()]
    rows.append(Headline(f"best cell of the grid ({best.unstable_pct:g}% unstable, R = {int(best.R)}): output "
                         "tokens/s vs vLLM", best.speedup_vs_vllm, "x", paper_note="-"))
    return rows
