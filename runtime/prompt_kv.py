"""Prompt KV shared across engines of one model: a prompt prefilled once is restored, not recomputed.

Prefill is dense under every KV policy, so the K/V of a prompt and the logits at its last token do not
depend on the policy. An engine given a PromptKVStore records the prefill of every prompt it computes
and, for a prompt already in the store, writes the stored K/V into its pool instead of running the model
(the policy's RequestKV, MinMax pages and moves go through the usual path). Used by evaluations that
decode the same prompts under many policies. Exact up to chunk boundaries (attention sums reordered).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class PromptKV:
    """One prompt's prefill: per layer K and V [Hkv, T, D] and the logits [vocab] at its last token."""

    k: list[torch.Tensor]
    v: list[torch.Tensor]
    logits: torch.Tensor

    @property
    def num_tokens(self) -> int:
        return self.k[0].shape[1]


@dataclass
class _Partial:
    k: list[list[torch.Tensor]]  # [layer][chunk] -> [Hkv, T, D]
    v: list[list[torch.Tensor]]
    next_pos: int = 0


@dataclass
class PromptKVStore:
    """Complete prefills keyed by the prompt's token ids; bound to the first model that uses it."""

    entries: dict[bytes, PromptKV] = field(default_factory=dict)
    model: object | None = None
    _partial: dict[bytes, _Partial] = field(default_factory=dict)

    @staticmethod
    def key(prompt: list[int]) -> bytes:
        return hashlib.sha1(np.asarray(prompt, dtype=np.int64).tobytes()).digest()

    def bind(self, model) -> None:
        """Restored K/V are only valid for the model that computed them."""
        if self.model is None:
            self.model = model
        elif self.model is not model:
            raise ValueError("this PromptKVStore holds another model's prefills: use one store per model")

    def get(self, prompt: list[int]) -> PromptKV | None:
        return self.entries.get(self.key(prompt))

    def record(self, prompt: list[int], start: int, k: list[torch.Tensor], v: list[torch.Tensor],
               logits: torch.Tensor | None) -> None:
        """One prefill chunk: per layer K, V [Hkv, T, D] of prompt tokens [start, start + T); logits [vocab]
        at the prompt's last token when this chunk ends the prompt (then the entry is complete)."""
        key = self.key(prompt)
        if key in self.entries:
            return
        if start == 0:  # a (re)started prefill
            self._partial[key] = _Partial([[] for _ in k], [[] for _ in v])
        part = self._partial.get(key)
        if part is None or start != part.next_pos:
            self._partial.pop(key, None)  # a gap (cannot happen in order): leave the prompt unrecorded
            return
        for layer in range(len(k)):
            part.k[layer].append(k[layer].clone())
            part.v[layer].append(v[layer].clone())
        part.next_pos += k[0].shape[1]
        if logits is not None and part.next_pos == len(prompt):
            del self._partial[key]
            self.entries[key] = PromptKV([torch.cat(c, dim=1) for c in part.k], [torch.cat(c, dim=1) for c in part.v],
                                         logits.clone())

    def __len__(self) -> int:
        return len(self.entries)
