"""Experiment `runtime_accuracy`: retrieval accuracy and perplexity of every KV policy at several page
budgets, measured through the real engine (paged prefill, then sparse/dense decode kernels per head).

  tessera experiment=runtime_accuracy backend=runtime [params.quick=true] [params.head_list=heads.tsv]

For each task and context length the items are built once (items.py); `full` runs first and its dense
prefills are kept in a PromptKVStore, so every other (policy, budget) restores them instead of
recomputing (prefill is dense under every policy: same K/V, same first logits). Budgets: budgets.py.
Writes accuracy.parquet / accuracy.csv (one row per policy x budget x task x context; `full` runs once
per task and context and is repeated at every budget), prints pivots and saves accuracy.png.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from tessera.experiments.backends.runtime import runtime_settings  # noqa: E402
from tessera.experiments.config import ConfigError  # noqa: E402
from tessera.experiments.resolve import model_folder  # noqa: E402
from tessera.experiments.runtime_eval.budgets import POLICIES, load_head_list, make_policy_for  # noqa: E402
from tessera.experiments.runtime_eval.items import (TASKS, Item, bits, heldout_corpus,  # noqa: E402
                                                    ppl_items, retrieval_items, score_retrieval)
from tessera.kernels.layout import PAGE_SIZE  # noqa: E402
from tessera.paths import REPO_ROOT  # noqa: E402
from tessera.results import empty_frame, save_run  # noqa: E402
from tessera.runtime.engine import GIB, Engine, EngineConfig, model_spec, resolve_device  # noqa: E402
from tessera.runtime.prompt_kv import PromptKVStore  # noqa: E402

RETRIEVAL = ("needle", "multikey", "kv")
METRICS = ("exact_match", "digit_accuracy", "first_digit_accuracy", "bits_per_byte")


@dataclass
class Setup:
    """What every cell shares: the loaded model, its tokenizer and spec, the head list, engine limits."""

    model: Any
    tokenizer: Any
    spec: Any
    name: str
    heads: list[tuple[int, int]] | None
    max_num_seqs: int
    max_num_batched_tokens: int
    seed: int
    retrieval_fraction: float


def params(cfg: DictConfig) -> dict[str, Any]:
    """cfg.params with params.quick_overrides applied when params.quick, checked (ConfigError names the key)."""
    p = OmegaConf.to_container(cfg.params, resolve=True) if cfg.params else {}
    if p.get("quick"):
        p.update(p.get("quick_overrides", {}))
    checks = [("policies", set(p.get("policies", ())) <= set(POLICIES), f"a list of {', '.join(POLICIES)}"),
              ("budgets", all(isinstance(b, int) and b >= 2 for b in p.get("budgets", ())) and p.get("budgets"),
               "a list of page counts >= 2, e.g. [8, 16, 32]"),
              ("tasks", set(p.get("tasks", ())) <= set(TASKS) and p.get("tasks"), f"a list of {', '.join(TASKS)}"),
              ("context_lens", all(isinstance(n, int) and n >= 256 for n in p.get("context_lens", ())),
               "a list of token counts >= 256 (at most the model's max_position_embeddings)"),
              ("num_examples", all(isinstance((p.get("num_examples") or {}).get(t), int)
                                   for t in p.get("tasks") or () if t in RETRIEVAL),
               "a mapping with an example count for every retrieval task in params.tasks, e.g. {needle: 16}")]
    for key, ok, allowed in checks:
        if not ok:
            raise ConfigError(f"params.{key}={p.get(key)!r} is invalid: use {allowed}")
    return p


def checkpoint_folder(cfg: DictConfig) -> Path:
    if not cfg.model.get("path"):
        raise ConfigError(f"experiment=runtime_accuracy runs a local checkpoint; model {cfg.model.name!r} is a "
                          "catalog entry without weights: use model=tessera_tiny_byte or set model.path")
    return model_folder(cfg.model)


def load_setup(cfg: DictConfig, p: dict) -> Setup:
    from tessera.runtime.checkpoint import DTYPES, load_checkpoint
    from tessera.runtime.tokenizer import load_tokenizer

    if cfg.backend.kind != "runtime":
        raise ConfigError(f"experiment=runtime_accuracy runs on the real engine, not backend={cfg.backend.kind}: "
                          "add backend=runtime")
    rt = runtime_settings(cfg.backend.runtime)
    torch.set_num_threads(int(rt["num_threads"] or 1))
    folder = checkpoint_folder(cfg)
    try:
        device = resolve_device(rt["device"])
    except ValueError as err:
        raise ConfigError(f"backend.runtime.device: {err}") from None
    model = load_checkpoint(folder, device=device, dtype=DTYPES[rt["dtype"]] if rt["dtype"] else None)
    longest = max([int(n) for n in p["context_lens"]] + [int(p["ppl"]["prefix_tokens"]) + int(p["ppl"]["scored_tokens"]) + 2])
    if longest > model.config.max_position_embeddings:
        raise ConfigError(f"params.context_lens / params.ppl: {longest} tokens exceed {folder.name}'s "
                          f"max_position_embeddings={model.config.max_position_embeddings}")
    heads = None
    if p.get("head_list"):
        path = Path(p["head_list"])
        path = path if path.exists() or path.is_absolute() else REPO_ROOT / path
        try:
            heads = load_head_list(path)
        except (OSError, ValueError, KeyError, IndexError) as err:
            raise ConfigError(f"params.head_list={str(path)!r} cannot be read as (layer, kv_head) pairs: {err}") \
                from None
    tokenizer = load_tokenizer(folder)
    if getattr(tokenizer, "kind", None) != "byte":
        raise ConfigError(f"experiment=runtime_accuracy's tasks are written in bytes for a byte-level tokenizer; "
                          f"model {cfg.model.name!r} has a {type(tokenizer).__name__}: use model=tessera_tiny_byte")
    return Setup(model, tokenizer, model_spec(model, folder.name), folder.name, heads,
                 int(p["max_num_seqs"]), int(p["max_num_batched_tokens"]), int(cfg.seed),
                 float(p.get("head_split_retrieval_fraction", 0.5)))


def engine_for(setup: Setup, policy: str, budget: int, items: list[Item], store: PromptKVStore) -> Engine:
    """An engine whose pools hold every item at once (no preemption), running `policy` at `budget`."""
    try:
        kv_policy = make_policy_for(policy, budget, setup.spec, setup.heads, setup.seed, setup.retrieval_fraction)
    except ValueError as err:
        raise ConfigError(f"params: {err}") from None
    batch = min(len(items), setup.max_num_seqs)
    pages = max(-(-(len(i.prompt) + len(i.forced)) // PAGE_SIZE) + 1 for i in items)
    heads = setup.spec.num_layers * setup.spec.num_kv_heads
    page_bytes = 2 * PAGE_SIZE * setup.spec.head_dim * setup.spec.dtype_bytes
    config = EngineConfig(max_num_seqs=batch, max_num_batched_tokens=setup.max_num_batched_tokens,
                          num_device_blocks=heads * pages * batch, host_kv_gib=heads * pages * batch * page_bytes / GIB,
                          kvpolicy=policy, seed=setup.seed)
    return Engine(setup.model, setup.tokenizer, config, policy=kv_policy, name=setup.name, prompt_kv=store)


def run_cell(setup: Setup, policy: str, budget: int, task: str, context: int, items: list[Item],
             store: PromptKVStore) -> dict:
    """Decode every item under one policy and budget; one table row of scores."""
    t0 = time.perf_counter()
    eng = engine_for(setup, policy, budget, items, store)
    ids = [eng.add_request(item.prompt, item.params(score=task == "ppl")) for item in items]
    eng.run()
    seqs = [eng.sequences[i] for i in ids]
    row = {"policy": policy, "budget": budget, "task": task, "context_len": context, "num_examples": len(items),
           "seconds": time.perf_counter() - t0, "restored_tokens": eng.num_restored_tokens}
    if task == "ppl":
        total_bits, total_bytes = map(sum, zip(*(bits(s.output_logprobs) for s in seqs)))
        row.update(num_answers=total_bytes, bits_per_byte=total_bits / total_bytes)
    else:
        exact, right, chars, first = map(sum, zip(*(score_retrieval(i, s.output_token_ids)
                                                    for i, s in zip(items, seqs))))
        answers = sum(len(i.answers) for i in items)
        row.update(num_answers=answers, exact_match=exact / answers, digit_accuracy=right / chars,
                   first_digit_accuracy=first / answers)
    return row


def cells(p: dict, setup: Setup, folder: Path):
    """(task, nominal context, items) in run order: retrieval tasks per context length, then perplexity."""
    heldout = heldout_corpus(folder)
    bos = setup.tokenizer.bos_id
    for task in p["tasks"]:
        if task == "ppl":
            q = p["ppl"]
            yield task, int(q["prefix_tokens"]), ppl_items(int(q["prefix_tokens"]), int(q["scored_tokens"]),
                                                             int(q["num_windows"]), heldout, bos)
            continue
        for L in p["context_lens"]:
            yield task, int(L), retrieval_items(task, int(L), int(p["num_examples"][task]), heldout, bos,
                                                int(p["kv_queries"]))


def add_retention(table: pd.DataFrame) -> pd.DataFrame:
    """Repeat `full` at every budget and divide by it: exact/digit retention = policy / full, bpb_ratio =
    policy bits per byte / full bits per byte (> 1 is worse)."""
    budgets = sorted(table.loc[table["policy"] != "full", "budget"].unique())
    full = table[table["policy"] == "full"]
    table = pd.concat([table[table["policy"] != "full"]] + [full.assign(budget=b) for b in budgets or [0]],
                      ignore_index=True)
    ref = full.set_index(["task", "context_len"])[list(METRICS)]
    ref = ref.add_prefix("full_")
    table = table.join(ref, on=["task", "context_len"])
    table["context_pages"] = -(-table["context_len"] // PAGE_SIZE)  # pages of the context, before decoding
    table["budget_fraction"] = (table["budget"] / table["context_pages"]).where(table["policy"] != "full")
    table["exact_retention"] = table["exact_match"] / table["full_exact_match"].where(table["full_exact_match"] > 0)
    table["digit_retention"] = table["digit_accuracy"] / table["full_digit_accuracy"].where(table["full_digit_accuracy"] > 0)
    table["first_digit_retention"] = (table["first_digit_accuracy"]
                                      / table["full_first_digit_accuracy"].where(table["full_first_digit_accuracy"] > 0))
    table["bpb_ratio"] = table["bits_per_byte"] / table["full_bits_per_byte"]
    order = {name: i for i, name in enumerate(dict.fromkeys(["full"] + list(table["policy"])))}
    return table.sort_values(["task", "context_len", "policy", "budget"], key=lambda c: c.map(order)
                             if c.name == "policy" else c).reset_index(drop=True)


def pooled(table: pd.DataFrame) -> pd.DataFrame:
    """Per policy, budget and task, over all context lengths (answers / scored bytes pooled): exact match,
    digit accuracy, bits per byte, and their retention against full (NaN where full scores 0)."""
    rows = []
    for (policy, budget, task), g in table.groupby(["policy", "budget", "task"], sort=False):
        w = g["num_answers"]
        row = {"policy": policy, "budget": budget, "task": task}
        for metric in METRICS:
            row[metric] = float((g[metric] * w).sum() / w.sum()) if g[metric].notna().all() else float("nan")
            row[f"full_{metric}"] = float((g[f"full_{metric}"] * w).sum() / w.sum()) \
                if g[metric].notna().all() else float("nan")
        rows.append(row)
    pool = pd.DataFrame(rows)
    pool["exact_retention"] = pool["exact_match"] / pool["full_exact_match"].where(pool["full_exact_match"] > 0)
    pool["digit_retention"] = pool["digit_accuracy"] / pool["full_digit_accuracy"].where(pool["full_digit_accuracy"] > 0)
    pool["first_digit_retention"] = (pool["first_digit_accuracy"]
                                     / pool["full_first_digit_accuracy"].where(pool["full_first_digit_accuracy"] > 0))
    pool["bpb_ratio"] = pool["bits_per_byte"] / pool["full_bits_per_byte"]
    return pool


def print_tables(table: pd.DataFrame, model: str) -> None:
    with pd.option_context("display.width", 220, "display.max_columns", 40, "display.float_format",
                           lambda v: f"{v:.3f}"):
        for metric, tasks in (("exact_match", RETRIEVAL), ("digit_accuracy", RETRIEVAL),
                              ("first_digit_accuracy", RETRIEVAL), ("bits_per_byte", ("ppl",))):
            sub = table[table["task"].isin(tasks)]
            if sub.empty:
                continue
            print(f"\n{metric} on {model} (rows: policy, budget in pages; columns: task, context tokens)")
            print(sub.pivot_table(index=["policy", "budget"], columns=["task", "context_len"], values=metric,
                                  sort=False).to_string())
        print("\npooled over context lengths; retention = policy / full (bpb_ratio > 1 is worse)")
        cols = ["policy", "budget", "task", "exact_match", "digit_accuracy", "first_digit_accuracy", "bits_per_byte",
                "exact_retention", "digit_retention", "first_digit_retention", "bpb_ratio"]
        print(pooled(table)[cols].to_string(index=False))


LABELS = {"exact_match": "exact match", "digit_accuracy": "digit accuracy", "bits_per_byte": "bits / byte",
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
    panels = [(t, "bits_per_byte", "bpb_ratio") if t == "ppl" else (t, "first_digit_accuracy", "first_digit_retention")
              for t in tasks]
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


def describe(cfg: DictConfig) -> dict:
    """What a run of this config evaluates (summary.json metadata.ran)."""
    if cfg.backend.kind != "runtime":
        raise ConfigError(f"experiment=runtime_accuracy runs on the real engine, not backend={cfg.backend.kind}: "
                          "add backend=runtime")
    return {"params": params(cfg), "model": cfg.model.name, "model_folder": str(checkpoint_folder(cfg)),
            "runtime": runtime_settings(cfg.backend.runtime), "seed": cfg.seed}


def run(cfg: DictConfig, run_dir: Path, metadata: dict) -> dict:
    p = params(cfg)
    setup = load_setup(cfg, p)
    folder = checkpoint_folder(cfg)
    policies = list(dict.fromkeys(["full"] + list(p["policies"])))
    budgets = [int(b) for b in p["budgets"]]
    rows, t0 = [], time.perf_counter()
    for task, context, items in cells(p, setup, folder):
        store = PromptKVStore()  # one cell's prefills: full computes them, the others restore them
        for policy in policies:
            for budget in ([budgets[0]] if policy == "full" else budgets):
                row = run_cell(setup, policy, budget, task, context, items, store)
                rows.append(row)
                if cfg.output.progress:
                    score = row.get("bits_per_byte", row.get("exact_match"))
                    print(f"{task:6s} {context:5d} {policy:19s} B={budget:3d}  {score:.3f}  {row['seconds']:.1f} s",
                          flush=True)
    table = add_retention(pd.DataFrame(rows))
    run_dir.mkdir(parents=True, exist_ok=True)
    table.to_parquet(run_dir / "accuracy.parquet", index=False)
    table.to_csv(run_dir / "accuracy.csv", index=False)
    if cfg.output.print_table:
        print_tables(table, setup.name)
        print(f"\n{len(rows)} cells in {time.perf_counter() - t0:.0f} s")
    if cfg.output.figures:
        figure(table, run_dir / "accuracy.png", setup.name)
    pool = pooled(table)
    weights = sorted(folder.glob("*.safetensors"))
    digest = hashlib.sha1(b"".join(w.read_bytes() for w in weights)).hexdigest()[:12] if weights else None
    summary = {"model": setup.name, "model_weights_sha1": digest, "seconds": time.perf_counter() - t0,
               "head_list": p.get("head_list"), "budgets": budgets, "context_lens": list(p["context_lens"]),
               "pooled": {f"{r.policy}/{r.budget}/{r.task}": {
                   "exact_match": r.exact_match, "digit_accuracy": r.digit_accuracy,
                   "first_digit_accuracy": r.first_digit_accuracy, "bits_per_byte": r.bits_per_byte,
                   "exact_retention": r.exact_retention, "digit_retention": r.digit_retention,
                   "first_digit_retention": r.first_digit_retention,
                   "bpb_ratio": r.bpb_ratio} for r in pool.itertuples()}}
    save_run(run_dir, empty_frame(), summary, None, metadata)
    return summary
