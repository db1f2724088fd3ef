"""Training batches: rows of stdlib text, key-value lookups, passkey needles and repeats, by weight.

Batch `step` depends only on (seed, step), so a resumed run sees exactly the batches it would have.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from tessera.runtime.tokenizer import ByteTokenizer
from tessera.runtime.train.corpus import Corpus
from tessera.runtime.train.tasks import (copy_example, key_value_example, kv_lines, multikey_needle_example,
                                         needle_example, repeat_example)

ROW_KINDS = ("text", "kv", "needle", "repeat", "copy", "kv_dense", "multikey")


@dataclass
class Mixture:
    text: float = 0.25
    kv: float = 0.3
    needle: float = 0.15
    repeat: float = 0.3
    copy: float = 0.0
    kv_dense: float = 0.0  # kv rows whose every key is looked up: ~45% of the row is answers
    multikey: float = 0.0  # multi-key needles in stdlib text, every key asked

    def probabilities(self) -> list[float]:
        weights = np.array([getattr(self, kind) for kind in ROW_KINDS])
        return (weights / weights.sum()).tolist()


@dataclass
class Batch:
    inputs: torch.Tensor  # (B, T) int64
    targets: torch.Tensor  # (B, T) int64, -100 where no loss (padding)
    is_answer: torch.Tensor  # (B, T) bool, True where the target is a retrieval answer token
    is_copy: torch.Tensor  # (B, T) bool, True where the target is in a repeat row's second copy


def make_row(kind: str, rng: np.random.Generator, seq_len: int, corpus: Corpus, tok: ByteTokenizer):
    """One row of seq_len + 1 tokens starting with <bos>, plus the answer and copy token positions."""
    body = seq_len  # tokens after <bos>
    if kind == "text":
        return [tok.bos_id] + corpus.window(rng, body), [], []
    if kind in ("repeat", "copy"):
        ex = repeat_example(rng, body) if kind == "repeat" else copy_example(rng, body)
    elif kind == "kv":
        ex = key_value_example(rng, body)
    elif kind == "kv_dense":
        ex = key_value_example(rng, body, num_queries=max(1, kv_lines(body) // 2))
    elif kind == "multikey":
        ex = multikey_needle_example(rng, body, corpus.data, num_needles=min(4, max(1, body // 128)))
    else:
        ex = needle_example(rng, body, corpus.data)
    tokens = [tok.bos_id] + ex.tokens
    tokens += [tok.pad_id] * (seq_len + 1 - len(tokens))
    # answer_loss tracks lookups and passkeys only; repeats' second copies are tracked as copy_loss
    positions = [p + 1 for s, e in ex.answer_spans for p in range(s, e)]  # +1: the <bos>
    return (tokens, [], positions) if kind in ("repeat", "copy") else (tokens, positions, [])


def make_batch(seed: int, step: int, batch_size: int, seq_len: int, mixture: Mixture,
               corpus: Corpus, tok: ByteTokenizer) -> Batch:
    rng = np.random.default_rng([seed, step])
    kinds = rng.choice(ROW_KINDS, batch_size, p=mixture.probabilities())
    rows = torch.empty(batch_size, seq_len + 1, dtype=torch.int64)
    is_answer = torch.zeros(batch_size, seq_len + 1, dtype=torch.bool)
    is_copy = torch.zeros(batch_size, seq_len + 1, dtype=torch.bool)
    for b, kind in enumerate(kinds):
        tokens, answers, copies = make_row(str(kind), rng, seq_len, corpus, tok)
        rows[b] = torch.tensor(tokens)
        is_answer[b, answers] = True
        is_copy[b, copies] = True
    targets = rows[:, 1:].clone()
    targets[targets == tok.pad_id] = -100
    return Batch(inputs=rows[:, :-1], targets=targets, is_answer=is_answer[:, 1:], is_copy=is_copy[:, 1:])
