"""Evaluation items as engine requests: a context prefilled densely, then a teacher-forced tail decoded
under the KV policy (questions forced, answers decoded greedily; perplexity windows forced and scored).

Retrieval examples come from runtime/train/tasks.py (passkey needle in held-out stdlib text, key-value
lookup with several queried keys), seeded from runtime/train/evaluate.py's EVAL_SEED (disjoint from
training). Everything after the context is decoded, so every answer token is predicted under the policy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tessera.runtime.sequence import FREE, SamplingParams
from tessera.runtime.train.corpus import DEFAULT_STDLIB, FILE_SEPARATOR, Corpus, load_split
from tessera.runtime.train.evaluate import EVAL_SEED
from tessera.runtime.train.tasks import (KEY_LEN, KV_QUERY_HEADER, MULTIKEY_QUESTION, NEEDLE_QUESTION,
                                         RetrievalExample, key_value_example, multikey_needle_example,
                                         needle_example)

TASKS = ("needle", "kv", "ppl", "multikey")  # a task's index seeds its items: append new tasks at the end


@dataclass
class Item:
    """prompt: bos + context (dense prefill); forced: the decoded tail, FREE where the model answers.
    answers: (offset in forced, answer string) per answer; ppl items score forced[1:] instead."""

    prompt: list[int]
    forced: tuple[int, ...]
    answers: list[tuple[int, str]]
    scored_bytes: int | None = None  # ppl items of a real tokenizer: bytes the scored tokens spell

    @property
    def answer_tokens(self) -> int:
        return len(self.forced)

    def params(self, score: bool) -> SamplingParams:
        return SamplingParams(max_tokens=len(self.forced), forced_token_ids=self.forced, ignore_eos=True,
                              logprobs=score)


def heldout_corpus(model_folder: Path) -> Corpus:
    """The held-out stdlib files the checkpoint lists (heldout_files.txt), else corpus.py's split."""
    listed = model_folder / "heldout_files.txt"
    if not listed.exists():
        return load_split("heldout")
    files = [f for f in listed.read_text().split() if f]
    texts = [(Path(DEFAULT_STDLIB) / f).read_text(encoding="utf-8") for f in files]
    data = np.frombuffer(FILE_SEPARATOR.join(texts).encode("utf-8"), dtype=np.uint8).copy()
    return Corpus(data=data, files=files)


def from_example(ex: RetrievalExample, question_start: int, bos: int) -> Item:
    """Context = tokens before question_start; the question and answers are decoded (answers FREE)."""
    end = ex.answer_spans[-1][1]
    forced = list(ex.tokens[question_start:end])
    answers = []
    for (a, b), answer in zip(ex.answer_spans, ex.answers):
        forced[a - question_start:b - question_start] = [FREE] * (b - a)
        answers.append((a - question_start, answer))
    return Item([bos] + ex.tokens[:question_start], tuple(forced), answers)


def retrieval_items(task: str, context_len: int, num_examples: int, heldout: Corpus, bos: int,
                    kv_queries: int = 8) -> list[Item]:
    """num_examples items of context_len tokens in all (bos + context + question + answers)."""
    rng = np.random.default_rng([EVAL_SEED, context_len, TASKS.index(task), 6])
    items = []
    for _ in range(num_examples):
        if task == "needle":
            ex = needle_example(rng, context_len - 1, heldout.data)
            start = ex.answer_spans[0][0] - len(NEEDLE_QUESTION)
        elif task == "kv":
            ex = key_value_example(rng, context_len - 1, num_queries=kv_queries)
            start = ex.answer_spans[0][0] - (KEY_LEN + 1) - len(KV_QUERY_HEADER)
        elif task == "multikey":  # every one of the needles asked, in random order
            ex = multikey_needle_example(rng, context_len - 1, heldout.data)
            start = ex.answer_spans[0][0] - len(MULTIKEY_QUESTION.format(key="k" * KEY_LEN))
        else:
            raise ValueError(f"task {task!r} is not a retrieval task: use needle, kv or multikey")
        items.append(from_example(ex, start, bos))
    return items


def ppl_items(prefix_tokens: int, scored_tokens: int, num_windows: int, heldout: Corpus, bos: int) -> list[Item]:
    """Held-out windows: bos + prefix_tokens bytes prefilled, then scored_tokens + 1 bytes forced; the first
    forced byte is predicted by the dense prefill, so only the scored_tokens after it are scored."""
    rng = np.random.default_rng([EVAL_SEED, prefix_tokens, TASKS.index("ppl")])
    n = prefix_tokens + scored_tokens + 1
    starts = rng.choice(len(heldout.data) - n, size=num_windows, replace=False)
    return [Item([bos] + heldout.data[s:s + prefix_tokens].tolist(),
                 tuple(heldout.data[s + prefix_tokens:s + n].tolist()), []) for s in starts]


def score_retrieval(item: Item, output: list[int]) -> tuple[int, int, int, int]:
    """(answers exactly right, answer characters right, answer characters, answers whose first character
    is right) of one decoded item. The first character is where the model must find the needle; the
    rest can be copied from beside it."""
    exact = right = total = first = 0
    for offset, answer in item.answers:
        got = bytes(t if t < 256 else 0 for t in output[offset:offset + len(answer)]).decode("latin-1")
        exact += got == answer
        right += sum(a == b for a, b in zip(got, answer))
        total += len(answer)
        first += got[:1] == answer[:1]
    return exact, right, total, first


def bits(logprobs: list[float], scored_bytes: int | None = None) -> tuple[float, int]:
    """(total bits, bytes) of a ppl item's scored log-probs (the first, dense-predicted one dropped); a byte
    tokenizer's tokens are bytes, a real tokenizer's item says how many bytes its scored tokens spell."""
    scored = logprobs[1:]
    return -sum(scored) / math.log(2), len(scored) if scored_bytes is None else scored_bytes
