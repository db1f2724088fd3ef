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


def decode_totals(rk, steps: int, unit: int = 1, before_step=None) -> tuple[int, int, int, float]:
    """(H2D bytes // unit, promoted pages, reloads, mean device pages) of a prefilled RequestKV decoding `steps`
    tokens, its reloads landing at once; before_step(rk) runs before every step (e.g. to draw a rank ahead)."""
    fetched = promoted = reloads = 0
    device = []
    for _ in range(steps):
        if before_step is not None:
            before_step(rk)
        s = rk.on_decode_step()
        fetched += s.h2d_bytes // unit
        promoted += s.num_promoted_pages
        if s.is_reloading:
            reloads += 1
            rk.on_reload_done()
        device.append(rk.device_pages)
    return fetched, promoted, reloads, float(np.mean(device))
