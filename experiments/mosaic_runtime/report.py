"""The runtime-vs-simulator comparison: rows per (scheduler, aggregation), Kendall tau, requests, figures.

Kept apart from the run loop so notebooks can redraw the figures from mosaic_table.csv and summary.json.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from tessera.results.schema import REQUEST_COLUMNS  # noqa: E402

SHOWN = ["scheduler", "aggregation", "expert_stage_s", "sim_expert_stage_s", "aggregator_stage_s",
         "sim_aggregator_stage_s", "e2e_s", "sim_e2e_s", "err_e2e", "speedup_e2e", "sim_speedup_e2e",
         "speedup_expert", "speedup_aggregator", "bypass_rate", "accuracy", "accuracy_change_pts", "spread_e2e",
         "phases", "replicas"]
STAGE_TIMES = ("expert_stage_s", "aggregator_stage_s", "e2e_s")


def step_columns(stage, kind: str, workers: int) -> dict:
    """Where a stage's error comes from: its measured engine steps (`steps_s_<kind>`, summed over workers), the
    calibration's time for the same steps (`step_fit_err_<kind>` = fitted / measured - 1: the step model at the
    stage's own batch shapes), and the share of the stage's workers x makespan spent inside steps, measured
    (`busy_<kind>`) and simulated (`sim_busy_<kind>`): a gap there is time between steps (loads, dispatch,
    replicas stepped in turn) that the simulator models differently. NaN when the steps were not recorded."""
    nan = float("nan")
    if stage is None or not stage.steps:
        return {f"steps_s_{kind}": nan, f"step_fit_err_{kind}": nan, f"busy_{kind}": nan, f"sim_busy_{kind}": nan}
    measured = sum(r["time_s"] for r in stage.steps)
    fitted = sum(r["fit_s"] for r in stage.steps)
    sim_end = stage.predicted.end_s
    return {f"steps_s_{kind}": measured, f"step_fit_err_{kind}": fitted / measured - 1,
            f"busy_{kind}": measured / (workers * stage.measured.end_s) if stage.measured.end_s > 0 else nan,
            f"sim_busy_{kind}": sum(stage.predicted.gpu_busy_s.values()) / (workers * sim_end) if sim_end > 0 else nan}


def stage_step_fit(steps: pd.DataFrame) -> dict:
    """Per stage kind, over every round: the calibration's error on the stages' own engine steps (fitted /
    measured - 1 per step: median, mean |error|, and of the summed times), and the steps' batch sizes. These steps
    are a check, never fitted."""
    out = {}
    if steps.empty:
        return out
    for kind, part in steps.groupby("stage"):
        rel = part["fit_s"] / part["time_s"] - 1
        decode = part["decode_seqs"][part["prefill_tokens"] == 0]
        out[kind] = {"steps": int(len(part)), "median": float(rel.median()), "mean_abs": float(rel.abs().mean()),
                     "total": float(part["fit_s"].sum() / part["time_s"].sum() - 1),
                     "decode_batch_median": float(decode.median()) if len(decode) else float("nan"),
                     "decode_batch_max": int(decode.max()) if len(decode) else 0,
                     "prefill_tokens_max": int(part["prefill_tokens"].max())}
    return out


def row(scheduler: str, aggregation: str, stage1, variant, num_queries: int, workers: int) -> dict:
    s2 = variant.stage
    expert, agg = stage1.measured.end_s, (s2.measured.end_s if s2 else 0.0)
    sim_expert, sim_agg = stage1.predicted.end_s, (s2.predicted.end_s if s2 else 0.0)
    loads = [sp.ready_s - sp.start_s for st in (stage1, s2) if st for sp in st.measured.spans]
    counts: dict[str, int] = {}
    for experts in stage1.plan.replicas.values():
        for e in experts:
            counts[stage1.problem.experts[e]] = counts.get(stage1.problem.experts[e], 0) + 1
    return {
        "scheduler": scheduler, "aggregation": aggregation,
        "expert_stage_s": expert, "aggregator_stage_s": agg, "e2e_s": expert + agg,
        "sim_expert_stage_s": sim_expert, "sim_aggregator_stage_s": sim_agg, "sim_e2e_s": sim_expert + sim_agg,
        "err_expert": sim_expert / expert - 1, "err_aggregator": (sim_agg / agg - 1) if agg > 0 else np.nan,
        "err_e2e": (sim_expert + sim_agg) / (expert + agg) - 1,
        "placer_expert_stage_s": stage1.plan.makespan_s,
        "bypass_rate": sum(d.bypass for d in variant.decisions.values()) / num_queries,
        "accuracy": sum(variant.correct.values()) / num_queries,
        "replicas": "dp over all workers" if stage1.plan.tensor_parallel else
        (";".join(f"{k}:{v}" for k, v in sorted(counts.items()) if v > 1) or "none>1"),
        "phases": max((len(p) for p in stage1.plan.phases.values()), default=1),
        "load_s_total": float(sum(loads)), "num_loads": len(loads),
        "placement_solve_s": stage1.solve_s, "driver_load_avg": stage1.load_avg,
        "lost_workers": len(stage1.measured.lost_workers)
        + (len(s2.measured.lost_workers) if s2 else 0),
        **step_columns(stage1, "expert", workers), **step_columns(s2, "aggregator", workers),
    }


def with_speedups(table: pd.DataFrame, baseline: str) -> pd.DataFrame:
    base = table[(table["scheduler"] == baseline) & (table["aggregation"] == "always")].iloc[0]
    out = table.copy()
    out["speedup_expert"] = base["expert_stage_s"] / out["expert_stage_s"]
    out["speedup_aggregator"] = base["aggregator_stage_s"] / out["aggregator_stage_s"].clip(lower=1e-9)
    out["speedup_e2e"] = base["e2e_s"] / out["e2e_s"]
    out["sim_speedup_expert"] = base["sim_expert_stage_s"] / out["sim_expert_stage_s"]
    out["sim_speedup_aggregator"] = base["sim_aggregator_stage_s"] / out["sim_aggregator_stage_s"].clip(lower=1e-9)
    out["sim_speedup_e2e"] = base["sim_e2e_s"] / out["sim_e2e_s"]
    out["accuracy_change_pts"] = 100 * (out["accuracy"] - base["accuracy"])
    return out


def over_repeats(per_round: pd.DataFrame) -> pd.DataFrame:
    """One row per (scheduler, aggregation): the median of every number over the rounds (each column on its own,
    so e2e_s is the median round's total, not the sum of the stage medians), the measured e2e's min and max and
    spread ((max - min) / median), errors recomputed from the medians. Rows keep the first round's order."""
    keys = ["scheduler", "aggregation"]
    groups = per_round.groupby(keys, sort=False)
    numeric = [c for c in per_round.columns if c not in keys and c != "repeat"
               and pd.api.types.is_numeric_dtype(per_round[c])]
    out = groups[numeric].median()
    for col in per_round.columns.difference(numeric + keys + ["repeat"]):
        out[col] = groups[col].first()
    out["repeats"] = groups.size()
    out["e2e_min_s"], out["e2e_max_s"] = groups["e2e_s"].min(), groups["e2e_s"].max()
    out["spread_e2e"] = (out["e2e_max_s"] - out["e2e_min_s"]) / out["e2e_s"]
    out["err_expert"] = out["sim_expert_stage_s"] / out["expert_stage_s"] - 1
    out["err_aggregator"] = (out["sim_aggregator_stage_s"] / out["aggregator_stage_s"].where(
        out["aggregator_stage_s"] > 0) - 1)
    out["err_e2e"] = out["sim_e2e_s"] / out["e2e_s"] - 1
    return out.reset_index()


def resolved_ranking(table: pd.DataFrame) -> dict:
    """The simulator's order checked only on the pairs of schedulers the runtime itself orders reliably: pairs
    whose measured e2e ranges over the rounds do not overlap. Pairs closer than the run-to-run spread have no
    stable measured order, so no prediction can be right or wrong about them. With one round nothing is resolved
    (no spread is known) and tau is NaN."""
    rows = list(table[["scheduler", "e2e_s", "e2e_min_s", "e2e_max_s", "sim_e2e_s", "repeats"]].itertuples(
        index=False))
    pairs, concordant, discordant = 0, [], []
    for i in range(len(rows)):
        for j in range(i + 1, len(rows)):
            a, b = sorted((rows[i], rows[j]), key=lambda r: r.e2e_s)  # a measured faster
            if a.repeats < 2 or b.repeats < 2 or a.e2e_max_s >= b.e2e_min_s:
                continue
            pairs += 1
            (concordant if a.sim_e2e_s < b.sim_e2e_s else discordant).append(f"{a.scheduler}<{b.scheduler}")
    n = len(rows) * (len(rows) - 1) // 2
    tau = (len(concordant) - len(discordant)) / pairs if pairs else float("nan")
    return {"pairs": n, "resolved_pairs": pairs, "concordant": concordant, "discordant": discordant,
            "kendall_tau_resolved": tau}


def describe_ranking(r: dict, repeats: int, max_spread: float) -> str:
    if repeats < 2:
        return "ranking beyond noise: one round only (params.runtime.repeats=1), the run-to-run spread is unknown"
    return (f"ranking beyond noise ({repeats} rounds, largest e2e spread {max_spread:.1%}): the runtime orders "
            f"{r['resolved_pairs']} of {r['pairs']} scheduler pairs with non-overlapping ranges; the simulator "
            f"agrees on {len(r['concordant'])}" + (f", disagrees on {', '.join(r['discordant'])}"
                                                  if r["discordant"] else "")
            + f" (tau over those pairs {r['kendall_tau_resolved']:.2f})")


def kendall_tau(a: list[float], b: list[float]) -> float:
    """Kendall's tau-a of two rankings (1: the same order; tied pairs count 0)."""
    n = len(a)
    if n < 2:
        return float("nan")
    score = sum(np.sign(a[i] - a[j]) * np.sign(b[i] - b[j]) for i in range(n) for j in range(i + 1, n))
    return float(score / (n * (n - 1) / 2))


def requests_frame(routed, stage1, variant, label: str, expert_answers) -> pd.DataFrame:
    """Both stages' measured requests in the shared schema (aggregator times offset by the expert stage)."""
    k = len(routed[0].experts)
    rows = []
    for x in stage1.measured.served:
        q, slot = divmod(x.request_id, k)
        answer = expert_answers.answers[q][slot]
        rows.append(_req(x, q, "expert", 0.0, answer, answer == routed[q].question.answer, label))
    if variant.stage:
        offset = stage1.measured.end_s
        first = len(routed) * k
        for x in variant.stage.measured.served:
            q = x.request_id - first
            rows.append(_req(x, q, "aggregator", offset, variant.final[q], variant.correct[q], label))
    return pd.DataFrame(rows).astype(REQUEST_COLUMNS)


def _req(x, q, stage, offset, answer, correct, label) -> dict:
    return {"request_id": x.request_id, "query_id": q, "stage": stage, "model": x.expert, "worker": x.worker,
            "arrival_s": offset, "start_s": x.start_s + offset, "first_token_s": x.first_token_s + offset,
            "finish_s": x.finish_s + offset, "prompt_tokens": x.prompt_tokens, "output_tokens": x.output_tokens,
            "preemptions": x.preemptions, "bytes_moved": 0.0, "answer": answer, "correct": correct,
            "status": "finished", "run_label": label}


def gantt_pair(stage1, variant, path: Path, title: str) -> Path:
    """Measured (left) and simulated (right) replica spans per worker: loading hatched, serving solid."""
    measured = [(sp.worker, sp.expert, sp.start_s, sp.ready_s, sp.end_s) for sp in stage1.measured.spans]
    simulated = [(sg.gpu, sg.expert, sg.start_s, sg.ready_s, sg.end_s) for sg in stage1.predicted.segments]
    cut, sim_cut = stage1.measured.end_s, stage1.predicted.end_s
    if variant.stage:
        measured += [(sp.worker, sp.expert, sp.start_s + cut, sp.ready_s + cut, sp.end_s + cut)
                     for sp in variant.stage.measured.spans]
        simulated += [(sg.gpu, sg.expert, sg.start_s + sim_cut, sg.ready_s + sim_cut, sg.end_s + sim_cut)
                      for sg in variant.stage.predicted.segments]
    models = sorted({m for _, m, *_ in measured + simulated})
    colours = {m: plt.cm.tab10(i % 10) for i, m in enumerate(models)}
    span = max([e for *_, e in measured + simulated] + [1e-9])
    fig, axes = plt.subplots(1, 2, figsize=(15, 3 + 0.6 * (1 + max(w for w, *_ in measured + simulated))),
                             sharey=True, layout="constrained")
    for ax, segs, barrier, name in ((axes[0], measured, cut, "measured (Ray workers)"),
                                    (axes[1], simulated, sim_cut, "simulated (same plan, same costs)")):
        lanes: dict[int, list[float]] = {}
        for w, m, start, ready, end in sorted(segs, key=lambda s: (s[0], s[2])):
            ends = lanes.setdefault(w, [])
            lane = next((i for i, e in enumerate(ends) if e <= start + 1e-9), len(ends))
            ends.append(0.0) if lane == len(ends) else None
            ends[lane] = end
            y = w + 0.1 + lane * 0.4
            ax.broken_barh([(start, ready - start)], (y, 0.35), facecolors=colours[m], hatch="///", alpha=0.45)
            ax.broken_barh([(ready, max(end - ready, 0))], (y, 0.35), facecolors=colours[m])
        ax.axvline(barrier, color="k", ls="--", lw=1)
        ax.set_xlim(0, span * 1.02)
        ax.set_xlabel("time since the expert stage started (s)")
        ax.set_title(name, loc="left", fontsize=10)
    workers = sorted({w for w, *_ in measured + simulated})
    axes[0].set_yticks([w + 0.5 for w in workers], [f"worker {w}" for w in workers])
    handles = [matplotlib.patches.Patch(color=colours[m], label=m) for m in models]
    handles.append(matplotlib.patches.Patch(facecolor="0.8", hatch="///", label="loading weights"))
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 6), fontsize=9)
    fig.suptitle(title + " (dashed: end of the expert stage)")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def makespan_figure(table: pd.DataFrame, path: Path) -> Path:
    """Measured vs predicted end-to-end time per scheduler/aggregation, stacked by stage (each stage's median
    over the rounds), with the measured e2e's median and min-max over the rounds."""
    labels = (table["scheduler"] + "/" + table["aggregation"]).tolist()
    x = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(max(7, 1.4 * len(labels)), 4.6), layout="constrained")
    ax.bar(x - 0.2, table["expert_stage_s"], 0.38, color="tab:blue", label="measured: expert stage")
    ax.bar(x - 0.2, table["aggregator_stage_s"], 0.38, bottom=table["expert_stage_s"], color="tab:cyan",
           label="measured: aggregator stage")
    ax.bar(x + 0.2, table["sim_expert_stage_s"], 0.38, color="tab:orange", label="simulated: expert stage")
    ax.bar(x + 0.2, table["sim_aggregator_stage_s"], 0.38, bottom=table["sim_expert_stage_s"], color="moccasin",
           label="simulated: aggregator stage")
    if "e2e_min_s" in table and (table["e2e_max_s"] > table["e2e_min_s"]).any():  # the rounds' range
        ax.errorbar(x - 0.2, table["e2e_s"], yerr=[table["e2e_s"] - table["e2e_min_s"],
                                                   table["e2e_max_s"] - table["e2e_s"]],
                    fmt="_", color="k", capsize=4, label="measured e2e: median, min-max over the rounds")
    for i, err in enumerate(table["err_e2e"]):
        ax.text(i + 0.2, table["sim_e2e_s"].iloc[i], f"{100 * err:+.0f}%", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, labels, rotation=20)
    ax.set_ylabel("end-to-end time (s)")
    ax.set_title("MoA on Ray workers: measured vs simulated, same plan (label: error)", fontsize=10)
    fig.legend(loc="outside lower center", ncol=3, fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
