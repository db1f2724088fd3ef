"""Run-level summary of a per-request results frame: latency percentiles, throughput, preemptions, KV use.

The same function summarises simulated and measured runs, so the two can be compared line by line.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from tessera.results.schema import BREAKDOWN_COLUMNS, add_latency_columns

PERCENTILES = (50, 90, 99)


def _stats(values: pd.Series) -> dict[str, float]:
    v = values.dropna().to_numpy(dtype=float)
    if v.size == 0:
        return {"mean": math.nan, **{f"p{p}": math.nan for p in PERCENTILES}}
    out = {"mean": float(v.mean())}
    out.update({f"p{p}": float(np.percentile(v, p)) for p in PERCENTILES})
    return out


def time_weighted_mean(t: np.ndarray, value: np.ndarray, end: float) -> float:
    """Mean of a step function that takes value[i] from t[i] until t[i+1] (the last until `end`)."""
    if len(t) == 0 or end <= t[0]:
        return math.nan
    widths = np.diff(np.append(t, end))
    return float(np.sum(widths * value) / (end - t[0]))


def summarize(frame: pd.DataFrame, kv_usage: pd.DataFrame | None = None) -> dict:
    """Latency stats (s), throughput over the span first arrival -> last finish, and KV utilisation.

    kv_usage: columns worker, t_s, used_blocks, num_blocks (step function per worker).
    """
    lat = add_latency_columns(frame)
    done = lat[lat["status"] == "finished"]
    span = float(done["finish_s"].max() - lat["arrival_s"].min()) if len(done) else math.nan
    summary: dict = {
        "num_requests": int(len(lat)),
        "num_finished": int(len(done)),
        "num_rejected": int(lat["status"].str.startswith("rejected").sum()),
        "duration_s": span,
        "ttft_s": _stats(done["ttft_s"]),
        "tpot_s": _stats(done["tpot_s"]),
        "e2e_s": _stats(done["e2e_s"]),
        "queue_s": _stats(done["queue_s"]),
        "request_throughput_per_s": len(done) / span if span and span > 0 else math.nan,
        "output_token_throughput_per_s": float(done["output_tokens"].sum()) / span if span and span > 0 else math.nan,
        "total_token_throughput_per_s": (float(done["output_tokens"].sum() + done["prompt_tokens"].sum()) / span
                                         if span and span > 0 else math.nan),
        "preemptions": int(lat["preemptions"].sum()),
        "bytes_moved": float(lat["bytes_moved"].sum()),
    }
    breakdown = [c for c in BREAKDOWN_COLUMNS if c in done.columns]
    if breakdown:
        summary["breakdown_s"] = {c.removesuffix("_s"): _stats(done[c]) for c in breakdown}
    if kv_usage is not None and len(kv_usage):
        end = float(done["finish_s"].max()) if len(done) else float(kv_usage["t_s"].max())
        means, peaks = [], []
        for _, g in kv_usage.groupby("worker", sort=True):
            frac = g["used_blocks"].to_numpy(float) / g["num_blocks"].to_numpy(float)
            means.append(time_weighted_mean(g["t_s"].to_numpy(float), frac, end))
            peaks.append(float(frac.max()))
        summary["kv_utilisation"] = {"mean": float(np.nanmean(means)), "max": float(max(peaks))}
    acc = lat["correct"].dropna()
    if len(acc):
        summary["accuracy"] = float(acc.astype(bool).mean())
    return summary


def summary_table(summary: dict) -> pd.DataFrame:
    """The latency block of a summary as a small table (rows: TTFT/TPOT/E2E, columns: mean/p50/p90/p99), in ms."""
    rows = {name: summary[f"{key}_s"] for name, key in (("TTFT", "ttft"), ("TPOT", "tpot"), ("E2E", "e2e"),
                                                        ("queue", "queue"))}
    return (pd.DataFrame(rows).T * 1e3).round(2).rename(columns=lambda c: f"{c} (ms)")
