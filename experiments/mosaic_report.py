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
                         "bytes_moved": 0.0, "answer": answer, "correct": correct, "status": seq.status,
                         "run_label": label})
    return pd.DataFrame(rows).astype(REQUEST_COLUMNS)


def gantt_figure(result: dict, path: Path, title: str) -> Path:
    """Per GPU: each replica's load (hatched) and serving span, coloured by model; stage 2 after the barrier."""
    segments = list(result["stage1"].segments) + (list(result["stage2"].segments) if result["stage2"] else [])
    models = sorted({s.expert for s in segments})
    colours = dict(zip(models, plt.cm.tab20(np.linspace(0, 1, max(len(models), 2)))))
    fig, ax = plt.subplots(figsize=(12, 1.2 + 0.9 * (max(s.gpu for s in segments) + 1)))
    lanes: dict[int, list[float]] = {}
    for s in sorted(segments, key=lambda s: (s.gpu, s.start_s)):
        # co-resident replicas overlap in time: stack them in thin sub-lanes of the GPU's row
        ends = lanes.setdefault(s.gpu, [])
        lane = next((i for i, e in enumerate(ends) if e <= s.start_s + 1e-9), len(ends))
        if lane == len(ends):
            ends.append(0.0)
        ends[lane] = s.end_s
        y = s.gpu + 0.1 + 0.12 * (lane % 6)
        ax.broken_barh([(s.start_s, s.ready_s - s.start_s)], (y, 0.1), facecolors=colours[s.expert], hatch="///",
                       alpha=0.5)
        ax.broken_barh([(s.ready_s, max(s.end_s - s.ready_s, 0))], (y, 0.1), facecolors=colours[s.expert])
    ax.axvline(result["expert_stage_s"], color="k", ls="--", lw=1, label="end of expert stage")
    ax.set_yticks([g + 0.45 for g in sorted(lanes)], [f"GPU {g}" for g in sorted(lanes)])
    ax.set_xlabel("time (s)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[m]) for m in models]
    ax.legend(handles, models, fontsize=6, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.18))
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def speedup_figure(table: pd.DataFrame, path: Path) -> Path:
    """End-to-end, expert-stage and aggregator-stage speedup over the baseline, per dataset and scheduler."""
    labels = (table["scheduler"] + "/" + table["aggregation"]).unique()
    datasets = table["dataset"].unique()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4), sharey=False)
    width = 0.8 / len(labels)
    for ax, col, name in zip(axes, ("speedup_expert", "speedup_aggregator", "speedup_e2e"),
                             ("expert stage", "aggregator stage", "end to end")):
        for i, label in enumerate(labels):
            part = table[(table["scheduler"] + "/" + table["aggregation"]) == label].set_index("dataset")
            ax.bar(np.arange(len(datasets)) + i * width, part.reindex(datasets)[col].to_numpy(), width, label=label)
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_xticks(np.arange(len(datasets)) + 0.4 - width / 2, datasets)
        ax.set_title(f"{name} speedup vs baseline")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
