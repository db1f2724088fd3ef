"""Inputs of the kernel checks, built on the CPU by the kernel tests' own builders (tests/kernels/pools.py:
NaN-guarded pools, ragged per-head block tables) and moved to the device whole, guards included, so a
kernel that reads or writes out of bounds on the GPU shows it as it does in the interpreter tests.

The kit needs the repository (tests/ is not installed); the repository root goes on sys.path.
"""
from __future__ import annotations

import random
import sys

import torch

from tessera.paths import REPO_ROOT

if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.kernels.pools import GUARD, TOL, PagedKV, guarded, guards_intact, make_paged_kv  # noqa: E402

__all__ = ["GUARD", "TOL", "PagedKV", "guarded", "guards_intact", "make_paged_kv", "to_device", "guarded_on",
           "random_page_lists", "DTYPES", "SCORE_TOL"]

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# score_pages: inputs are exact in every dtype and sums are fp32 (tests/kernels/test_score_pages.py)
SCORE_TOL = {torch.float32: 1e-4, torch.float16: 2e-3, torch.bfloat16: 2e-3}


def to_device(kv: PagedKV, device: torch.device | str) -> PagedKV:
    """The same PagedKV on `device`: the whole guarded buffer moves, the pool stays a view inside it."""
    buf = kv.buf.to(device)
    pool = buf[GUARD:GUARD + kv.kv_pool.numel()].view(kv.kv_pool.shape)
    return PagedKV(pool, buf, kv.block_tables.to(device), kv.seq_lens.to(device))


def guarded_on(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device | str,
               fill: float = float("nan")) -> tuple[torch.Tensor, torch.Tensor]:
    """pools.guarded, on `device`: (view of `shape` inside the buffer, the whole buffer)."""
    _, buf = guarded(shape, dtype, fill)
    buf = buf.to(device)
    numel = buf.numel() - 2 * GUARD
    return buf[GUARD:GUARD + numel].view(shape), buf


def random_page_lists(kv: PagedKV, k: int, rng: random.Random) -> torch.Tensor:
    """[B, H, k] lists of distinct logical pages of different lengths: -1 anywhere, some past the table
    (as tests/kernels/test_sparse_paged_decode_attention.py builds them)."""
    num_seqs, num_kv_heads, width = kv.block_tables.shape
    pages = torch.full((num_seqs, num_kv_heads, k), -1, dtype=torch.int32)
    for b in range(num_seqs):
        for h in range(num_kv_heads):
            candidates = rng.sample(range(width + 2), min(k, width + 2))  # width, width + 1: past the table
            for i, page in enumerate(candidates):
                pages[b, h, i] = page if rng.random() < 0.8 else -1
    return pages
