"""Experiment `runtime_accuracy`: retrieval accuracy and perplexity of every KV policy at several page
budgets, measured through the real engine (paged prefill, then sparse/dense decode kernels per head).

  tessera experiment=runtime_accuracy [model=smollm2] [params.quick=true] [params.head_list=heads.tsv]

The model's tokenizer picks the task family (cells.py): the shipped byte model gets the byte tasks,
a real model RULER-style needles in real text (text_tasks.py); params left null take that family's
defaults (FAMILY_DEFAULTS), and what ran is recorded in summary.json. For each task and context length
the items are built once; `full` runs first and its dense prefills are kept in a PromptKVStore, so every
other (policy, budget) restores them instead of recomputing (prefill is dense under every policy).
Writes accuracy.parquet / accuracy.csv (tables.py), rerank_interval.csv when params.rerank_intervals is
set, prints pivots and saves accuracy.png. Each finished cell is appended to cells.jsonl at once (cell_log.py):
a run stopped part-way keeps them, and the same command in the same folder (hydra.run.dir) resumes.
"""
from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from tessera.experiments.backends.runtime import runtime_settings
from tessera.experiments.config import ConfigError
from tessera.experiments.resolve import model_folder
from tessera.experiments.runtime_eval.budgets import POLICIES, load_head_list
from tessera.experiments.runtime_eval.cell_log import CELL_LOG, CellLog
from tessera.experiments.runtime_eval.cells import (BYTE_TASKS, REAL_TASKS, Setup, cells, run_cell,
                                                    with_rerank_interval)
from tessera.experiments.runtime_eval.tables import add_retention, figure, pooled, print_tables
from tessera.experiments.runtime_eval.text_tasks import PROMPT_FORMATS
from tessera.paths import REPO_ROOT
from tessera.results import empty_frame, save_run
from tessera.runtime.engine import model_spec, resolve_device
from tessera.runtime.prompt_kv import PromptKVStore

# What params left null mean for each tokenizer family (quick: the CLI test's small slice).
FAMILY_DEFAULTS = {
    "byte": {"tasks": ["needle", "multikey", "kv", "ppl"], "context_lens": [2048, 4096, 8192],
             "num_examples": {"needle": 16, "multikey": 6, "kv": 6}, "kv_queries": 8,
             "ppl": {"prefix_tokens": 2048, "scored_tokens": 256, "num_windows": 8}},
    "text": {"tasks": ["niah_single", "niah_multikey", "niah_multivalue", "passkey", "ppl"],
             "context_lens": [1024, 2048, 4096],
             "num_examples": {"niah_single": 4, "niah_multikey": 4, "niah_multivalue": 4, "passkey": 4},
             "ppl": {"prefix_tokens": 2048, "scored_tokens": 128, "num_windows": 4}, "prompt_format": "chat"},
}
QUICK_DEFAULTS = {
    "byte": {"tasks": ["kv", "ppl"], "num_examples": {"kv": 2}, "kv_queries": 2,
             "ppl": {"prefix_tokens": 512, "scored_tokens": 16, "num_windows": 2}},
    "text": {"tasks": ["niah_single", "ppl"], "num_examples": {"niah_single": 2},
             "ppl": {"prefix_tokens": 512, "scored_tokens": 16, "num_windows": 2}},
}
FAMILY_ONLY = {"kv_queries": "byte", "prompt_format": "text"}


def params(cfg: DictConfig, family: str | None = None) -> dict[str, Any]:
    """cfg.params with params.quick_overrides applied when params.quick and the null ones filled from the
    tokenizer family's defaults (when `family` is given), checked (ConfigError names the key)."""
    p = OmegaConf.to_container(cfg.params, resolve=True) if cfg.params else {}
    if family is not None:
        for key, owner in FAMILY_ONLY.items():
            if p.get(key) is not None and owner != family:
                raise ConfigError(f"params.{key}={p[key]!r} applies to {owner}-level models only; this model's "
                                  f"tokenizer is {family}-level: drop it")
    if p.get("quick"):
        p.update(p.get("quick_overrides") or {})
        if family is not None:
            p.update({k: v for k, v in QUICK_DEFAULTS[family].items() if p.get(k) is None})
    if family is not None:
        p.update({k: v for k, v in FAMILY_DEFAULTS[family].items() if p.get(k) is None})
    tasks = BYTE_TASKS if family == "byte" else REAL_TASKS if family == "text" else BYTE_TASKS + REAL_TASKS
    retrieval = [t for t in p.get("tasks") or () if t != "ppl"]
    checks = [("policies", set(p.get("policies", ())) <= set(POLICIES), f"a list of {', '.join(POLICIES)}"),
              ("budgets", all(isinstance(b, int) and b >= 2 for b in p.get("budgets", ())) and p.get("budgets"),
               "a list of page counts >= 2, e.g. [4, 8, 16, 32]"),
              ("tasks", set(p.get("tasks") or ()) <= set(tasks) and p.get("tasks"),
               f"a list of {', '.join(tasks)} (the tasks of this model's tokenizer family)"),
              ("context_lens", all(isinstance(n, int) and n >= 256 for n in p.get("context_lens") or ()),
               "a list of token counts >= 256 (at most the model's max_position_embeddings)"),
              ("num_examples", all(isinstance((p.get("num_examples") or {}).get(t), int) for t in retrieval),
               "a mapping with an example count for every retrieval task in params.tasks, e.g. {needle: 16}"),
              ("prompt_format", p.get("prompt_format") in (None,) + PROMPT_FORMATS, f"one of {PROMPT_FORMATS}"),
              ("rerank_intervals", all(isinstance(r, int) and r >= 1 for r in p.get("rerank_intervals") or ()),
               "a list of rerank intervals >= 1, e.g. [4, 8, 16, 32, 64]")]
    for key, ok, allowed in checks:
        if not ok:
            raise ConfigError(f"params.{key}={p.get(key)!r} is invalid: use {allowed}")
    return p


def checkpoint_folder(cfg: DictConfig) -> Path:
    if not cfg.model.get("path"):
        raise ConfigError(f"experiment=runtime_accuracy runs a local checkpoint; model {cfg.model.name!r} is a "
                          "catalog entry without weights: use model=tessera_tiny_byte, model=smollm2 or set model.path")
    return model_folder(cfg.model)


def tokenizer_family(folder: Path) -> str:
    """byte (the shipped model's UTF-8 byte vocabulary) or text (a tokenizer.json: a real BPE tokenizer)."""
    return "text" if (folder / "tokenizer.json").exists() else "byte"


def load_setup(cfg: DictConfig, p: dict) -> Setup:
    from tessera.runtime.checkpoint import DTYPES, load_checkpoint
    from tessera.runtime.tokenizer import load_tokenizer

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
    heads = profiled_heads(folder.name)
    if p.get("head_list"):
        path = Path(p["head_list"])
        path = path if path.exists() or path.is_absolute() else REPO_ROOT / path
        try:
            heads = load_head_list(path)
        except (OSError, ValueError, KeyError, IndexError) as err:
            raise ConfigError(f"params.head_list={str(path)!r} cannot be read as (layer, kv_head) pairs: {err}") \
                from None
    return Setup(model, load_tokenizer(folder), model_spec(model, folder.name), folder.name, heads,
                 int(p["max_num_seqs"]), int(p["max_num_batched_tokens"]), int(cfg.seed),
                 float(p.get("head_split_retrieval_fraction", 0.5)), p.get("prompt_format") or "plain")


def profiled_heads(name: str) -> list[tuple[int, int]] | None:
    """The model's own profiled head list (its 25% least stable heads, runtime/profiling), when it has one:
    flexicache's unstable heads and head_split's full heads unless params.head_list says otherwise."""
    from tessera.kvcache.head_lists import shipped_unstable_heads

    try:
        return [tuple(h) for h in shipped_unstable_heads(name)]
    except (KeyError, FileNotFoundError):
        return None


def head_list_source(p: dict, folder: Path) -> str:
    from tessera.kvcache.head_lists import unstable_list_source

    if p.get("head_list"):
        return f"params.head_list={p['head_list']}"
    return unstable_list_source(folder.name) if profiled_heads(folder.name) else \
        "none: flexicache's synthetic class, head_split's seeded random gates"


def describe(cfg: DictConfig) -> dict:
    """What a run of this config evaluates (summary.json metadata.ran): the params in force for this model."""
    if cfg.backend.kind != "runtime":
        raise ConfigError(f"experiment=runtime_accuracy runs on the real engine, not backend={cfg.backend.kind}: "
                          "add backend=runtime")
    folder = checkpoint_folder(cfg)
    family = tokenizer_family(folder)
    p = params(cfg, family)
    return {"params": p, "head_list": head_list_source(p, folder), "tokenizer_family": family, "model": cfg.model.name,
            "model_folder": str(folder), "runtime": runtime_settings(cfg.backend.runtime), "seed": cfg.seed}


def run(cfg: DictConfig, run_dir: Path, metadata: dict) -> dict:
    folder = checkpoint_folder(cfg)
    p = params(cfg, tokenizer_family(folder))
    setup = load_setup(cfg, p)
    policies = list(dict.fromkeys(["full"] + list(p["policies"])))
    budgets = [int(b) for b in p["budgets"]]
    rows, sweep, t0 = [], [], time.perf_counter()
    run_dir.mkdir(parents=True, exist_ok=True)
    done = CellLog(run_dir / CELL_LOG, {**p, "model": str(folder), "seed": cfg.seed}, fresh=bool(cfg.get("force")))  # finished cells survive a crash; a rerun in the folder resumes
    for task, context, items in cells(p, setup, folder):
        store = PromptKVStore()  # one cell's prefills: full computes them, the others restore them
        runs = [(policy, budget, setup) for policy in policies for budget in ([budgets[0]] if policy == "full"
                                                                              else budgets)]
        runs += [("flexicache", int(p["rerank_budget"]), with_rerank_interval(setup, r))
                 for r in p.get("rerank_intervals") or ()]
        for policy, budget, cell_setup in runs:
            row = done.get(task, context, policy, budget, cell_setup.kv_overrides)
            if row is None:
                row = run_cell(cell_setup, policy, budget, task, context, items, store)
                done.add(row, cell_setup.kv_overrides)
            (sweep if cell_setup.kv_overrides else rows).append(row)
            if cfg.output.progress:
                score = row.get("bits_per_byte", row.get("exact_match"))
                extra = f" R={row['rerank_interval']}" if cell_setup.kv_overrides else ""
                print(f"{task:15s} {context:5d} {policy:19s} B={budget:3d}{extra}  {score:.3f}  "
                      f"{row['seconds']:.1f} s", flush=True)
    table = add_retention(pd.DataFrame(rows))
    table.to_parquet(run_dir / "accuracy.parquet", index=False)
    table.to_csv(run_dir / "accuracy.csv", index=False)
    rerank = rerank_table(sweep, table) if sweep else None
    if rerank is not None:
        rerank.to_csv(run_dir / "rerank_interval.csv", index=False)
    if cfg.output.print_table:
        print_tables(table, setup.name)
        if rerank is not None:
            print(f"\nflexicache at {p['rerank_budget']} pages per head, by rerank interval R (exact match; "
                  "bits per byte for ppl)")
            print(rerank.to_string(index=False))
        print(f"\n{len(rows) + len(sweep)} cells in {time.perf_counter() - t0:.0f} s")
    if cfg.output.figures:
        figure(table, run_dir / "accuracy.png", setup.name)
    return save_summary(run_dir, table, rerank, setup, folder, p, time.perf_counter() - t0, metadata)


def rerank_table(sweep: list[dict], table: pd.DataFrame) -> pd.DataFrame:
    """One row per (task, context, R): the score and its retention against full at the same cell."""
    frame = pd.DataFrame(sweep)
    full = table[table["policy"] == "full"].drop_duplicates(["task", "context_len"]).set_index(["task", "context_len"])
    score = frame["exact_match"].where(frame["task"] != "ppl", frame.get("bits_per_byte"))
    ref = [full.loc[(t, c), "bits_per_byte" if t == "ppl" else "exact_match"]
           for t, c in zip(frame["task"], frame["context_len"])]
    out = frame[["task", "context_len", "budget", "rerank_interval", "num_examples"]].assign(score=score)
    out["full_score"] = ref
    out["retention"] = out["score"] / out["full_score"].where(out["full_score"] > 0)
    return out


def save_summary(run_dir: Path, table: pd.DataFrame, rerank, setup: Setup, folder: Path, p: dict,
                 seconds: float, metadata: dict) -> dict:
    pool = pooled(table)
    weights = sorted(folder.glob("*.safetensors"))
    digest = hashlib.sha1(b"".join(w.read_bytes() for w in weights)).hexdigest()[:12] if weights else None
    metrics = ("exact_match", "exact_lo", "exact_hi", "value_recall", "digit_accuracy", "first_digit_accuracy",
               "bits_per_byte", "exact_retention", "digit_retention", "first_digit_retention", "bpb_ratio")
    summary = {"model": setup.name, "model_weights_sha1": digest, "seconds": seconds,
               "head_list": head_list_source(p, folder), "budgets": [int(b) for b in p["budgets"]],
               "context_lens": list(p["context_lens"]), "tasks": list(p["tasks"]),
               "prompt_format": setup.prompt_format if not setup.is_byte else None,
               "pooled": {f"{r['policy']}/{r['budget']}/{r['task']}": {m: r[m] for m in metrics}
                          for r in pool.to_dict(orient="records")},
               "rerank_interval": None if rerank is None else rerank.to_dict(orient="records")}
    save_run(run_dir, empty_frame(), summary, None, metadata)
    return summary
