"""Engine runs the engine phase compares: greedy generation with log-probs, teacher-forced scoring of given
tokens, a plain (non-paged) forward, and host syncs over decode steps.

KV policy budgets are tests/runtime/test_engine.py's: small, so ~100-token requests rank, offload, reload
and drop pages.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from tessera.runtime.engine import Engine, EngineConfig
from tessera.runtime.sequence import SamplingParams

POLICIES = {
    "full": {},
    "quest": {"topk_pages": 3},
    "streaming": {"sink_tokens": 16, "window_tokens": 32},
    "head_split": {"sink_tokens": 16, "window_tokens": 32},
    "flexicache": {"topk_pages": 3, "rerank_interval": 4},
    "flexicache_adaptive": {"topk_pages": 3},
}
TEXTS = ("Q: What is 2 + 3?\nA:", "The quick brown fox",
         "Tessera pages every KV head on its own: sixteen tokens a page, and a block table per head maps each "
         "logical page to a block of the pool, on the GPU or in pinned host memory.")


@dataclass
class Run:
    tokens: list[list[int]]
    logprobs: list[list[float]]
    stats: dict


def make_engine(folder: Path, device: str, dtype: str, policy: str = "full", small_pool: bool = True) -> Engine:
    pool = {"num_device_blocks": 4000, "host_kv_gib": 0.05} if small_pool else {"host_kv_gib": 0.25}
    config = EngineConfig(kvpolicy=policy, kvpolicy_params=POLICIES[policy], max_num_batched_tokens=64, **pool)
    return Engine.from_checkpoint(folder, config, device=device, dtype=dtype)


def prompts(engine: Engine) -> list[list[int]]:
    return [engine.tokenizer.encode(t) for t in TEXTS]


def generate(engine: Engine, prompt_ids: list[list[int]], max_tokens: int,
             forced: list[list[int]] | None = None) -> Run:
    """Greedy (or teacher-forced on `forced`) decoding of every prompt at once, log-probs recorded."""
    ids = []
    for i, p in enumerate(prompt_ids):
        force = tuple(forced[i][:max_tokens]) if forced else ()
        ids.append(engine.add_request(p, SamplingParams(max_tokens=max_tokens, ignore_eos=True, logprobs=True,
                                                        forced_token_ids=force)))
    engine.run()
    seqs = [engine.sequences[i] for i in ids]
    return Run([s.output_token_ids for s in seqs], [s.output_logprobs for s in seqs], engine.stats())


@torch.no_grad()
def plain_greedy(model, prompt: list[int], n: int) -> list[int]:
    """Transformer.forward over the whole sequence for every new token (no paged KV, no kernels)."""
    device = model.model.embed_tokens.weight.device
    tokens = list(prompt)
    for _ in range(n):
        tokens.append(int(model(torch.tensor([tokens], device=device))[0, -1].argmax()))
    return tokens[len(prompt):]


def first_divergence(a: list[list[int]], b: list[list[int]]) -> tuple[int, int] | None:
    """(prompt, position) of the first differing token, or None when equal."""
    for i, (x, y) in enumerate(zip(a, b)):
        for j, (s, t) in enumerate(zip(x, y)):
            if s != t:
                return i, j
        if len(x) != len(y):
            return i, min(len(x), len(y))
    return None


def agreement(a: list[list[int]], b: list[list[int]]) -> float:
    """Fraction of tokens generated before each prompt's first divergence (1.0: identical)."""
    same = total = 0
    for x, y in zip(a, b):
        total += len(x)
        for s, t in zip(x, y):
            if s != t:
                break
            same += 1
    return same / total if total else 1.0


def logprob_gap(a: list[list[float]], b: list[list[float]]) -> tuple[float, float]:
    """(mean, max) |a - b| over every scored token."""
    diffs = [abs(x - y) for xs, ys in zip(a, b) for x, y in zip(xs, ys)]
    return (sum(diffs) / len(diffs), max(diffs)) if diffs else (0.0, 0.0)


def decode_steps_syncs(engine: Engine, prompt_ids: list[list[int]], steps: int):
    """Host syncs counted over `steps` decode steps of every prompt at once (after prefill and one decode)."""
    from tessera.gpu_check.syncs import count_cuda_syncs

    for p in prompt_ids:
        engine.add_request(p, SamplingParams(max_tokens=steps + 16, ignore_eos=True))
    while any(s.num_computed_tokens < s.num_prompt_tokens for s in engine.sequences.values()):
        engine.step()
    engine.step()
    torch.cuda.synchronize()
    with count_cuda_syncs() as syncs:
        for _ in range(steps):
            engine.step()
    engine.run()
    return syncs
