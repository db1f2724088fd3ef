"""Greedy decoding with a naive contiguous KV cache, driven through the model's per-layer hooks.

This is the evaluation decoder and the reference a paged-KV engine should reproduce token for token.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from tessera.runtime.model import Transformer, causal_attention


@dataclass
class ContiguousKVCache:
    """Per layer, keys and values of every position so far: (B, Hkv, S, D), grown by concatenation."""

    keys: list[torch.Tensor] = field(default_factory=list)
    values: list[torch.Tensor] = field(default_factory=list)

    @property
    def num_tokens(self) -> int:
        return self.keys[0].shape[-2] if self.keys else 0

    def append(self, layer_idx: int, k: torch.Tensor, v: torch.Tensor):
        if layer_idx == len(self.keys):
            self.keys.append(k)
            self.values.append(v)
        else:
            self.keys[layer_idx] = torch.cat([self.keys[layer_idx], k], dim=-2)
            self.values[layer_idx] = torch.cat([self.values[layer_idx], v], dim=-2)
        return self.keys[layer_idx], self.values[layer_idx]


@torch.no_grad()
def forward_with_cache(model: Transformer, tokens: torch.Tensor, cache: ContiguousKVCache) -> torch.Tensor:
    """tokens (B, T) following the cache's positions -> logits (B, T, vocab); the cache grows by T."""
    start = cache.num_tokens
    positions = torch.arange(start, start + tokens.shape[1], device=tokens.device)
    h = model.embed(tokens)
    rope = model.rope(positions)
    for i, layer in enumerate(model.layers):
        q, k, v = layer.qkv(h, rope)
        k_all, v_all = cache.append(i, k, v)
        h = layer.finish(h, causal_attention(q, k_all, v_all))
    return model.logits(h)


@torch.no_grad()
def greedy_generate(model: Transformer, prompt: list[int], num_new_tokens: int) -> list[int]:
    """Prefill the prompt in one pass, then decode one token at a time; returns the new tokens."""
    device = model.model.embed_tokens.weight.device
    cache = ContiguousKVCache()
    logits = forward_with_cache(model, torch.tensor([prompt], device=device), cache)
    new_tokens = []
    for _ in range(num_new_tokens):
        next_token = int(logits[0, -1].argmax())
        new_tokens.append(next_token)
        logits = forward_with_cache(model, torch.tensor([[next_token]], device=device), cache)
    return new_tokens
