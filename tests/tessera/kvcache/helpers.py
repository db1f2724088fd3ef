"""Shared fixtures for the kvcache tests: a tiny model and a random top-K source."""
from __future__ import annotations

import numpy as np

from tessera.types import ModelSpec

TINY = ModelSpec(name="tiny", hf_id="none/tiny", num_layers=3, hidden_size=64, num_heads=8, num_kv_heads=4,
                 head_dim=8, intermediate_size=128, vocab_size=100, num_params=1e6)


class RandomTopK:
    """Uniformly random top-K sets (worst case for reloads), seeded."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def select(self, decode_step, num_pages, layers, heads, prev, steps_since, k) -> np.ndarray:
        return np.stack([self.rng.permutation(num_pages)[:k] for _ in range(len(layers))]).astype(np.int32)
