"""Measure the trained model: greedy retrieval accuracy at several context lengths, held-out perplexity.

Retrieval examples use seeds disjoint from training (training batches use [seed, step]; these use
EVAL_SEED) and needles hidden in held-out stdlib files.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from tessera.runtime.model import Transformer
from tessera.runtime.tokenizer import ByteTokenizer
from tessera.runtime.train.corpus import Corpus
from tessera.runtime.train.decode import greedy_generate
from tessera.runtime.train.tasks import (RetrievalExample, key_value_example, multikey_needle_example,
                                         needle_example)

EVAL_SEED = 12345
RETRIEVAL_TASKS = ("kv", "needle", "multikey")


@dataclass
class RetrievalScore:
    task: str
    context_len: int
    num_examples: int
    exact_match: float  # fraction of answers decoded exactly
    digit_accuracy: float  # fraction of answer digits right (chance: 0.1)
    first_digit_accuracy: float  # fraction of answers whose first digit is right: the needle was found


def eval_examples(task: str, context_len: int, num_examples: int, heldout: Corpus) -> list[RetrievalExample]:
    rng = np.random.default_rng([EVAL_SEED, context_len, RETRIEVAL_TASKS.index(task)])
    body = context_len - 1  # room for <bos>
    if task == "kv":
        return [key_value_example(rng, body, num_queries=1) for _ in range(num_examples)]
    if task == "multikey":  # one of the 4 keys asked: the other notes are distractors
        return [multikey_needle_example(rng, body, heldout.data, num_queries=1) for _ in range(num_examples)]
    return [needle_example(rng, body, heldout.data) for _ in range(num_examples)]


def retrieval_score(model: Transformer, task: str, context_len: int, num_examples: int,
                    heldout: Corpus) -> RetrievalScore:
    tok = ByteTokenizer()
    exact, digits_right, digits, first = 0, 0, 0, 0
    for ex in eval_examples(task, context_len, num_examples, heldout):
        answer = ex.answers[0]
        got = tok.decode(greedy_generate(model, [tok.bos_id] + ex.prompt_for(0), len(answer)))
        exact += got == answer
        digits_right += sum(a == b for a, b in zip(got, answer))
        digits += len(answer)
        first += got[:1] == answer[:1]
    return RetrievalScore(task, context_len, num_examples, exact / num_examples, digits_right / digits,
                          first / num_examples)


@torch.no_grad()
def heldout_bits_per_byte(model: Transformer, heldout: Corpus, context_len: int = 2048,
                          max_windows: int | None = None) -> dict:
    """Mean loss over consecutive non-overlapping windows (<bos> + context_len - 1 bytes each)."""
    tok = ByteTokenizer()
    body = context_len - 1
    num_windows = (len(heldout.data) - 1) // body
    if max_windows is not None:
        num_windows = min(num_windows, max_windows)
    total_nll, total_bytes = 0.0, 0
    for w in range(num_windows):
        chunk = heldout.data[w * body : (w + 1) * body + 1].tolist()
        tokens = torch.tensor([[tok.bos_id] + chunk])
        logits = model(tokens[:, :-1])
        total_nll += F.cross_entropy(logits[0], tokens[0, 1:], reduction="sum").item()
        total_bytes += len(chunk)
    nats = total_nll / total_bytes
    return {"context_len": context_len, "num_windows": num_windows, "num_bytes": total_bytes,
            "nats_per_byte": nats, "bits_per_byte": nats / math.log(2), "perplexity_per_byte": math.exp(nats)}


def evaluate(model: Transformer, heldout: Corpus, context_lens=(1024, 2048, 4096),
             num_examples: int = 32, log=print) -> dict:
    scores = []
    for task in RETRIEVAL_TASKS:
        for L in context_lens:
            scores.append(asdict(retrieval_score(model, task, L, num_examples, heldout)))
            log(scores[-1])
    ppl = heldout_bits_per_byte(model, heldout)
    log(ppl)
    return {"retrieval": scores, "heldout": ppl}
