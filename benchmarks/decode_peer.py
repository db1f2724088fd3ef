"""The transformers peer of benchmarks/runtime_decode.py: the same checkpoint through AutoModelForCausalLM,
greedy decode timed step by step from a prefill it is handed (or computes itself), never timing the prefill.

The timed loop is generate(do_sample=False)'s decode without its bookkeeping (logits processors, stopping
criteria): one forward of the last token per step with past_key_values (a DynamicCache), then argmax.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch


@dataclass
class DecodeRun:
    """One system's decode of one batch: its output tokens and the time of its decode steps only."""

    tokens: list[list[int]]  # per request, every output token (the first one comes from the prefill)
    decode_tokens: int  # tokens that timed decode steps produced
    wall_s: float
    cpu_s: float  # process CPU time: what preemption by other jobs on a shared machine does not inflate
    extra: dict = field(default_factory=dict)


def load_peer(folder, dtype: torch.dtype = torch.float32):
    """(transformers' model of the checkpoint, None), or (None, why not) when transformers is absent."""
    try:
        from transformers import AutoModelForCausalLM
    except ImportError as err:
        return None, f"transformers is not importable ({err}); install the dev extra to compare against it"
    return AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).eval(), None


def cache_from_prefills(model, prefills: list) -> tuple[object, torch.Tensor]:
    """A DynamicCache holding the batch's stored prefills (runtime/prompt_kv.py PromptKV, post-RoPE K like
    transformers' cache) and the logits [B, vocab] at the prompts' last tokens."""
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    dtype = model.get_input_embeddings().weight.dtype
    for layer in range(len(prefills[0].k)):
        k = torch.stack([p.k[layer] for p in prefills]).to(dtype)  # [B, Hkv, T, D]
        v = torch.stack([p.v[layer] for p in prefills]).to(dtype)
        cache.update(k, v, layer)
    return cache, torch.stack([p.logits for p in prefills])


@torch.inference_mode()
def own_prefill(model, prompts: list[list[int]]) -> tuple[object, torch.Tensor]:
    """transformers' own prefill of equal-length prompts: (cache, logits [B, vocab] at the last tokens)."""
    out = model(torch.tensor(prompts), use_cache=True, logits_to_keep=1)
    return out.past_key_values, out.logits[:, -1].float()


@torch.inference_mode()
def greedy_decode(model, cache, logits: torch.Tensor, num_tokens: int) -> DecodeRun:
    """num_tokens greedy tokens per request: the first from the prefill's logits, num_tokens - 1 timed steps."""
    token = logits.argmax(-1)
    out = [token]
    wall = cpu = 0.0
    for _ in range(num_tokens - 1):
        t0, c0 = time.perf_counter(), time.process_time()
        step = model(input_ids=token[:, None], past_key_values=cache, use_cache=True)
        token = step.logits[:, -1].argmax(-1)
        wall += time.perf_counter() - t0
        cpu += time.process_time() - c0
        out.append(token)
    tokens = torch.stack(out, dim=1).tolist()
    return DecodeRun(tokens, len(tokens) * (num_tokens - 1), wall, cpu)
