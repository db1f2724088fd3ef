"""One evaluation cell of runtime_accuracy: build a task's items at one context length for the model's
tokenizer, decode them under one (policy, budget) through the engine, score them into a table row.

Byte-level models get the byte tasks (items.py: needle, multikey, kv, bytes of ppl); models with a real
tokenizer get RULER-style tasks in real text (text_tasks.py) and ppl in bits per UTF-8 byte.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator

from tessera.experiments.config import ConfigError
from tessera.experiments.runtime_eval.budgets import make_policy_for
from tessera.experiments.runtime_eval.items import (Item, bits, heldout_corpus, ppl_items, retrieval_items,
                                                    score_retrieval)
from tessera.experiments.runtime_eval.text_tasks import (TEXT_TASKS, TextItem, heldout_lines, key_words,
                                                         score_text, text_items, text_ppl_items, wilson_interval)
from tessera.kernels.layout import PAGE_SIZE
from tessera.runtime.engine import GIB, Engine, EngineConfig
from tessera.runtime.prompt_kv import PromptKVStore

BYTE_TASKS = ("needle", "multikey", "kv", "ppl")
REAL_TASKS = TEXT_TASKS + ("ppl",)


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
    prompt_format: str = "plain"  # real-text tasks: plain completion or the model's chat template
    kv_overrides: dict | None = None  # extra kvpolicy parameters (the rerank-interval sweep)

    @property
    def is_byte(self) -> bool:
        return getattr(self.tokenizer, "kind", None) == "byte"


def engine_for(setup: Setup, policy: str, budget: int, items: list, store: PromptKVStore) -> Engine:
    """An engine whose pools hold every item at once (no preemption), running `policy` at `budget`."""
    try:
        kv_policy = make_policy_for(policy, budget, setup.spec, setup.heads, setup.seed, setup.retrieval_fraction,
                                    setup.kv_overrides)
    except ValueError as err:
        raise ConfigError(f"params: {err}") from None
    batch = min(len(items), setup.max_num_seqs)
    pages = max(-(-(len(i.prompt) + i.answer_tokens) // PAGE_SIZE) + 1 for i in items)
    heads = setup.spec.num_layers * setup.spec.num_kv_heads
    page_bytes = 2 * PAGE_SIZE * setup.spec.head_dim * setup.spec.dtype_bytes
    config = EngineConfig(max_num_seqs=batch, max_num_batched_tokens=setup.max_num_batched_tokens,
                          num_device_blocks=heads * pages * batch, host_kv_gib=heads * pages * batch * page_bytes / GIB,
                          kvpolicy=policy, seed=setup.seed)
    return Engine(setup.model, setup.tokenizer, config, policy=kv_policy, name=setup.name, prompt_kv=store)


def run_cell(setup: Setup, policy: str, budget: int, task: str, context: int, items: list,
             store: PromptKVStore) -> dict:
    """Decode every item under one policy and budget; one table row of scores."""
    t0 = time.perf_counter()
    eng = engine_for(setup, policy, budget, items, store)
    ids = [eng.add_request(item.prompt, item.params(score=task == "ppl")) for item in items]
    eng.run()
    seqs = [eng.sequences[i] for i in ids]
    row = {"policy": policy, "budget": budget, "task": task, "context_len": context, "num_examples": len(items),
           "seconds": time.perf_counter() - t0, "restored_tokens": eng.num_restored_tokens}
    if setup.kv_overrides:
        row.update(setup.kv_overrides)
    if task == "ppl":
        total_bits, total_bytes = map(sum, zip(*(bits(s.output_logprobs, i.scored_bytes) for i, s in zip(items, seqs))))
        row.update(num_answers=total_bytes, bits_per_byte=total_bits / total_bytes)
    elif isinstance(items[0], TextItem):
        scores = [score_text(i, setup.tokenizer.decode(s.output_token_ids)) for i, s in zip(items, seqs)]
        exact, recall, first = map(sum, zip(*scores))
        lo, hi = wilson_interval(exact, len(items))
        row.update(num_answers=len(items), exact_match=exact / len(items), exact_lo=lo, exact_hi=hi,
                   value_recall=recall / len(items), first_digit_accuracy=first / len(items))
    else:
        exact, right, chars, first = map(sum, zip(*(score_retrieval(i, s.output_token_ids)
                                                    for i, s in zip(items, seqs))))
        answers = sum(len(i.answers) for i in items)
        lo, hi = wilson_interval(exact, answers)
        row.update(num_answers=answers, exact_match=exact / answers, exact_lo=lo, exact_hi=hi,
                   digit_accuracy=right / chars, first_digit_accuracy=first / answers)
    return row


def cells(p: dict, setup: Setup, folder: Path) -> Iterator[tuple[str, int, list]]:
    """(task, nominal context, items) in run order: perplexity, then every retrieval task at each context length,
    shortest first (a run stopped part-way has every task at the lengths it finished)."""
    heldout = heldout_corpus(folder)
    if not setup.is_byte:
        text = bytes(heldout.data).decode("utf-8", errors="replace")
        lines, words = heldout_lines(text), key_words(text)
    if "ppl" in p["tasks"]:
        q = p["ppl"]
        if setup.is_byte:
            items = ppl_items(int(q["prefix_tokens"]), int(q["scored_tokens"]), int(q["num_windows"]), heldout,
                              setup.tokenizer.bos_id)
        else:
            items = text_ppl_items(int(q["prefix_tokens"]), int(q["scored_tokens"]), int(q["num_windows"]),
                                   setup.tokenizer, text, setup.seed)
        yield "ppl", int(q["prefix_tokens"]), items
    for L in sorted(int(c) for c in p["context_lens"]):
        for task in (t for t in p["tasks"] if t != "ppl"):
            n = int(p["num_examples"][task])
            if setup.is_byte:
                yield task, L, retrieval_items(task, L, n, heldout, setup.tokenizer.bos_id, int(p["kv_queries"]))
            else:
                yield task, L, text_items(task, L, n, setup.tokenizer, lines, words, setup.seed,
                                          setup.prompt_format)


def with_rerank_interval(setup: Setup, interval: int) -> Setup:
    """The setup whose flexicache reranks every `interval` steps (the rerank-interval sweep)."""
    return replace(setup, kv_overrides={"rerank_interval": int(interval)})


__all__ = ["BYTE_TASKS", "REAL_TASKS", "Item", "Setup", "cells", "engine_for", "run_cell", "with_rerank_interval"]
