"""Tables and figures of the mosaic experiment: per-request records, a Gantt chart, speedup bars.

Kept apart from the experiment loop so notebooks can redraw them from saved results.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from tessera.results.schema import REQUEST_COLUMNS  # noqa: E402


def records_frame(workload, result: dict, label: str) -> pd.DataFrame:
    """Both stages' requests in the shared schema (absolute times), with answers and correctness."""
    rows = []
    outcomes = result["outcomes"]
    for stage in (result["stage1"], result["stage2"]):
        if stage is None:
            continue
        for seq, offset in stage.records:
            r = seq.request
            if r.stage == "expert":
                query, slot = workload.slot_of(r.request_id)
                answer = query.slots[slot].answer
                correct = answer == query.reference_answer
            else:
                outcome = outcomes[r.query_id]
                answer, correct = outcome.final_answer, outcome.is_correct
            rows.append({"request_id": r.request_id, "query_id": r.query_id, "stage": r.stage, "model": r.model,
                         "worker": seq.worker_id, "arrival_s": seq.arrival_s + offset,
                         "start_s": seq.first_scheduled_s + offset, "first_token_s": seq.first_token_s + offset,
                         "finish_s": seq.finish_s + offset, "prompt_tokens": r.prompt_tokens,
                         "output_tokens": r.output_tokens, "preemptions": seq.num_preemptions,
                         "bytes_moved": stage.kv_bytes.get(r.request_id, 0.0), "answer": answer, "correct": correct,
                         "status": seq.status,
                         "run_label": label})
    return pd.DataFrame(rows).astype(REQUEST_COLUMNS)


def gantt_figure(result: dict, path: Path, title: str) -> Path:
    """Per GPU: each replica's weight load (hatched) and serving span (solid), coloured by model; the aggregator
    stage starts after the dashed line. Replicas sharing a GPU at the same time get lanes of that GPU's row."""
    segments = list(result["stage1"].segments) + (list(result["stage2"].segments) if result["stage2"] else [])
    models = sorted({s.expert for s in segments})
    # tab20's dark shades first, then the light ones, so models that sort next to each other differ in hue
    palette = [plt.cm.tab20(i) for i in list(range(0, 20, 2)) + list(range(1, 20, 2))]
    colours = {m: palette[i % 20] for i, m in enumerate(models)}
    placed, lanes = [], {}
    for s in sorted(segments, key=lambda s: (s.gpu, s.start_s)):
        ends = lanes.setdefault(s.gpu, [])
        lane = next((i for i, e in enumerate(ends) if e <= s.start_s + 1e-9), len(ends))
        if lane == len(ends):
            ends.append(0.0)
        ends[lane] = s.end_s
        placed.append((s, lane))
    gpus = sorted(lanes)
    span = max(s.end_s for s in segments) or 1.0
    fig, ax = plt.subplots(figsize=(12, 2.6 + 0.9 * len(gpus)), layout="constrained")
    for s, lane in placed:
        height = 0.8 / len(lanes[s.gpu])
        y = s.gpu + 0.1 + lane * height
        ax.broken_barh([(s.start_s, s.ready_s - s.start_s)], (y, 0.9 * height), facecolors=colours[s.expert],
                       hatch="///", alpha=0.5, edgecolor="0.3", linewidth=0)
        ax.broken_barh([(s.ready_s, max(s.end_s - s.ready_s, 0))], (y, 0.9 * height), facecolors=colours[s.expert])
        # name the serving spans the name fits in (~0.006 of the time axis per 8-pt character at 12 in wide):
        # 16 colours are hard to tell apart
        if s.end_s - s.ready_s > 0.0065 * span * len(s.expert):
            r, g, b, _ = colours[s.expert]
            ax.text((s.ready_s + s.end_s) / 2, y + 0.45 * height, s.expert, ha="center", va="center", fontsize=8,
                    color="white" if 0.299 * r + 0.587 * g + 0.114 * b < 0.5 else "black")
    ax.axvline(result["expert_stage_s"], color="k", ls="--", lw=1)
    ax.set_yticks([g + 0.5 for g in gpus], [f"GPU {g}" for g in gpus], fontsize=10)
    ax.set_ylim(min(gpus), max(gpus) + 1)
    ax.set_xlim(0, span * 1.01)
    ax.set_xlabel("time (s)")
    ax.set_title(title, loc="left")
    patch = matplotlib.patches.Patch
    key = [patch(facecolor="0.85", hatch="///", edgecolor="0.3", linewidth=0, label="loading weights"),
           patch(facecolor="0.45", label="serving requests"),
           plt.Line2D([], [], color="k", ls="--", lw=1, label="end of expert stage (aggregators follow)")]
    ax.legend(handles=key, loc="lower right", bbox_to_anchor=(1, 1), ncol=3, fontsize=9, frameon=False)
    handles = [patch(color=colours[m], label=m) for m in models]
    fig.legend(handles=handles, loc="outside lower center", ncol=4, fontsize=9, title="model (colour)",
               title_fontsize=9)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def speedup_figure(table: pd.DataFrame, path: Path) -> Path:
    """End-to-end, expert-stage and aggregator-stage speedup over the baseline, per dataset and scheduler."""
    labels = (table["scheduler"] + "/" + table["aggregation"]).unique()
    datasets = table["dataset"].unique()
    cols = ["speedup_expert", "speedup_aggregator", "speedup_e2e"]
    # the baseline is the scheduler/aggregation pair whose speedups are all exactly 1
    label_of = table["scheduler"] + "/" + table["aggregation"]
    baseline = next((lab for lab in labels if (table.loc[label_of == lab, cols] == 1.0).all().all()), "baseline")
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6), layout="constrained")
    width = 0.8 / len(labels)
    for ax, col, name in zip(axes, cols, ("expert stage", "aggregator stage", "end to end")):
        for i, label in enumerate(labels):
            part = table[label_of == label].set_index("dataset")
            ax.bar(np.arange(len(datasets)) + i * width, part.reindex(datasets)[col].to_numpy(), width, label=label,
                   color=plt.cm.tab10(i % 10))
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_xticks(np.arange(len(datasets)) + 0.4 - width / 2, datasets)
        ax.set_xlabel("dataset")
        ax.set_ylabel(f"speedup over {baseline} (x)")
        ax.set_title(name)
        ax.grid(axis="y", alpha=0.3)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncol=len(names), fontsize=9,
               title="scheduler / aggregation (always = no aggregator bypass)", title_fontsize=9)
    fig.suptitle(f"MoA serving: speedup of each scheduler over {baseline}, per stage and dataset")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
