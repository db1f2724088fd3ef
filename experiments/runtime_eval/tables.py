"""runtime_accuracy's results: retention against full, pooling over context lengths, console tables and
the figure. Exact match carries a 95% Wilson interval (exact_lo, exact_hi) computed from the counts.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from tessera.experiments.runtime_eval.text_tasks import TEXT_TASKS, wilson_interval  # noqa: E402
from tessera.kernels.layout import PAGE_SIZE  # noqa: E402

RETRIEVAL = ("needle", "multikey", "kv") + TEXT_TASKS
METRICS = ("exact_match", "value_recall", "digit_accuracy", "first_digit_accuracy", "bits_per_byte")


def add_retention(table: pd.DataFrame) -> pd.DataFrame:
    """Repeat `full` at every budget and divide by it: exact/digit retention = policy / full, bpb_ratio =
    policy bits per byte / full bits per byte (> 1 is worse)."""
    budgets = sorted(table.loc[table["policy"] != "full", "budget"].unique())
    full = table[table["policy"] == "full"]
    table = pd.concat([table[table["policy"] != "full"]] + [full.assign(budget=b) for b in budgets or [0]],
                      ignore_index=True)
    table = _with_metric_columns(table)
    ref = _with_metric_columns(full).set_index(["task", "context_len"])[list(METRICS)]
    ref = ref.add_prefix("full_")
    table = table.join(ref, on=["task", "context_len"])
    table["context_pages"] = -(-table["context_len"] // PAGE_SIZE)  # pages of the context, before decoding
    table["budget_fraction"] = (table["budget"] / table["context_pages"]).where(table["policy"] != "full")
    _add_ratios(table)
    order = {name: i for i, name in enumerate(dict.fromkeys(["full"] + list(table["policy"])))}
    return table.sort_values(["task", "context_len", "policy", "budget"], key=lambda c: c.map(order)
                             if c.name == "policy" else c).reset_index(drop=True)


def pooled(table: pd.DataFrame) -> pd.DataFrame:
    """Per policy, budget and task, over all context lengths (answers / scored bytes pooled): exact match,
    digit accuracy, bits per byte, and their retention against full (NaN where full scores 0)."""
    rows = []
    table = _with_metric_columns(table)
    for (policy, budget, task), g in table.groupby(["policy", "budget", "task"], sort=False):
        w = g["num_answers"]
        row = {"policy": policy, "budget": budget, "task": task}
        for metric in METRICS:
            row[metric] = float((g[metric] * w).sum() / w.sum()) if g[metric].notna().all() else float("nan")
            row[f"full_{metric}"] = float((g[f"full_{metric}"] * w).sum() / w.sum()) \
                if g[metric].notna().all() else float("nan")
        row["exact_lo"], row["exact_hi"] = wilson_interval(row["exact_match"] * w.sum(), int(w.sum())) \
            if task != "ppl" else (float("nan"), float("nan"))
        rows.append(row)
    pool = pd.DataFrame(rows)
    _add_ratios(pool)
    return pool


def _with_metric_columns(table: pd.DataFrame) -> pd.DataFrame:
    """Every METRICS column present (NaN where a task family has no such score, e.g. digit accuracy of text)."""
    missing = {m: float("nan") for m in METRICS if m not in table}
    return table.assign(**missing) if missing else table


def _add_ratios(t: pd.DataFrame) -> None:
    """Retention = policy / full where full scored above 0; bpb_ratio = policy / full bits per byte."""
    for metric, name in (("exact_match", "exact_retention"), ("value_recall", "value_retention"),
                         ("digit_accuracy", "digit_retention"), ("first_digit_accuracy", "first_digit_retention")):
        t[name] = t[metric] / t[f"full_{metric}"].where(t[f"full_{metric}"] > 0)
    t["bpb_ratio"] = t["bits_per_byte"] / t["full_bits_per_byte"]


def print_tables(table: pd.DataFrame, model: str) -> None:
    with pd.option_context("display.width", 220, "display.max_columns", 40, "display.float_format",
                           lambda v: f"{v:.3f}"):
        for metric, tasks in (("exact_match", RETRIEVAL), ("value_recall", TEXT_TASKS), ("digit_accuracy", RETRIEVAL),
                              ("first_digit_accuracy", RETRIEVAL), ("bits_per_byte", ("ppl",))):
            sub = table[table["task"].isin(tasks)]
            if sub.empty or metric not in sub or sub[metric].isna().all():
                continue
            print(f"\n{metric} on {model} (rows: policy, budget in pages; columns: task, context tokens)")
            print(sub.pivot_table(index=["policy", "budget"], columns=["task", "context_len"], values=metric,
                                  sort=False).to_string())
        print("\npooled over context lengths; exact_lo/hi: 95% Wilson interval; retention = policy / full "
              "(bpb_ratio > 1 is worse)")
        pool = pooled(table)
        cols = [c for c in ("policy", "budget", "task", "exact_match", "exact_lo", "exact_hi", "value_recall",
                            "digit_accuracy", "first_digit_accuracy", "bits_per_byte", "exact_retention",
                            "digit_retention", "first_digit_retention", "bpb_ratio") if not pool[c].isna().all()]
        print(pool[cols].to_string(index=False))


LABELS = {"exact_match": "exact match (95% Wilson interval)", "digit_accuracy": "digit accuracy",
          "bits_per_byte": "bits / byte",
          "first_digit_accuracy": "first-digit accuracy (needle found)",
          "exact_retention": "exact match, policy / full", "digit_retention": "digit accuracy, policy / full",
          "first_digit_retention": "first-digit accuracy, policy / full",
          "bpb_ratio": "bits / byte, policy / full (lower is better)"}


def figure(table: pd.DataFrame, path: Path, model: str) -> None:
    """One column per task. Top row: the score pooled over context lengths vs budget (first-digit accuracy, i.e.
    did the model find the needle, for retrieval; bits per byte for ppl); bottom row: its retention (policy /
    full). Digit accuracy and exact match are in the printed tables and accuracy.csv."""
    pool = pooled(table)
    tasks = list(dict.fromkeys(table["task"]))
    panels = [(t, "bits_per_byte", "bpb_ratio") if t == "ppl" else (t, "exact_match", "exact_retention")
              if t in TEXT_TASKS else (t, "first_digit_accuracy", "first_digit_retention") for t in tasks]
    sparse = [p for p in dict.fromkeys(pool["policy"]) if p != "full"]
    budgets = sorted(pool["budget"].unique())
    fig, axes = plt.subplots(2, len(panels), figsize=(3.6 * len(panels) + 0.8, 6.6), squeeze=False,
                             layout="constrained")
    for j, (task, metric, retention) in enumerate(panels):
        for row, col in ((0, metric), (1, retention)):
            ax = axes[row][j]
            part = pool[pool["task"] == task]
            full = part[part["policy"] == "full"]
            ax.plot(full["budget"], full[col], color="k", ls="--", lw=1.2, label="full (dense KV)")
            for i, policy in enumerate(sparse):
                g = part[part["policy"] == policy]
                # policies often score the same: a small sideways shift per policy keeps every marker visible
                shift = 2 ** (0.04 * (i - (len(sparse) - 1) / 2))
                ax.plot(g["budget"] * shift, g[col], marker="osD^vP"[i % 6], ms=6, color=f"C{i}", label=policy)
                if col == "exact_match":  # the interval says how much n examples can tell apart
                    ax.vlines(g["budget"] * shift, g["exact_lo"], g["exact_hi"], color=f"C{i}", lw=1, alpha=0.6)
            if col in ("digit_accuracy", "first_digit_accuracy"):
                ax.axhline(0.1, color="gray", lw=0.8, ls=":", label="chance (1 digit in 10)")
            if part[col].isna().all():
                ax.text(0.5, 0.5, "undefined: full scores 0", ha="center", va="center", transform=ax.transAxes,
                        color="gray")
            ax.set_xscale("log", base=2)
            ax.set_xticks(budgets, [str(b) for b in budgets])
            ax.xaxis.set_minor_locator(plt.NullLocator())
            ax.set_xlim(budgets[0] / 1.4, budgets[-1] * 1.4)
            ax.set_ylabel(LABELS[col], fontsize=9)
            ax.grid(alpha=0.3)
            if row == 0:
                ax.set_title(f"{task} (pooled over context lengths)", fontsize=10)
            else:
                ax.set_xlabel("budget (pages per sparse head)", fontsize=9)
    handles = {}
    for ax in axes.flat:
        for h, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, h)
    fig.legend(list(handles.values()), list(handles), loc="outside lower center",
               ncol=min(len(handles), 2 * len(panels)), fontsize=9)
    fig.suptitle(f"KV policy accuracy through the engine ({model})\nscore (top row), retention vs full (bottom row)",
                 fontsize=11)
    fig.savefig(path, dpi=110)
    plt.close(fig)
