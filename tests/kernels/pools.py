"""Builders for kernel tests: guarded pools, ragged per-head block tables, and naive references.

Guarded pools sit inside a larger NaN-filled buffer, and unused slots hold NaN too: a kernel that
reads anything it should not returns NaN, and one that writes out of bounds changes a guard.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from tessera.kernels.layout import PAGE_SIZE

GUARD = 4096  # elements of NaN before and after each guarded pool

# (atol, rtol) per dtype. bf16: the interpreter truncates fp32 -> bf16 (1 ulp = 2**-7 relative).
TOL = {torch.float32: (2e-5, 1e-4), torch.float16: (2e-3, 2e-3), torch.bfloat16: (2e-2, 2e-2)}


def guarded(shape: tuple[int, ...], dtype: torch.dtype, fill: float = float("nan")) -> tuple[torch.Tensor, torch.Tensor]:
    """(view of `shape`, contiguous, inside a buffer; the whole buffer) filled with `fill`."""
    numel = math.prod(shape)
    buf = torch.full((numel + 2 * GUARD,), fill, dtype=dtype)
    return buf[GUARD:GUARD + numel].view(shape), buf


def guards_intact(buf: torch.Tensor, fill: float = float("nan")) -> bool:
    head, tail = buf[:GUARD].float(), buf[-GUARD:].float()
    if math.isnan(fill):
        return bool(head.isnan().all() and tail.isnan().all())
    return bool((head == fill).all() and (tail == fill).all())


@dataclass
class PagedKV:
    """A KV pool holding ragged sequences, each KV head paged on its own."""

    kv_pool: torch.Tensor  # [2, N, 16, D]; NaN in every slot that holds no token
    buf: torch.Tensor
    block_tables: torch.Tensor  # int32 [B, H, P], -1 past each sequence
    seq_lens: torch.Tensor  # int32 [B]


def make_paged_kv(seq_lens: list[int], num_kv_heads: int, head_dim: int, dtype: torch.dtype,
                  gen: torch.Generator, extra_pages: int = 1, spare_blocks: int = 3) -> PagedKV:
    num_seqs = len(seq_lens)
    pages_needed = [-(-n // PAGE_SIZE) for n in seq_lens]
    width = max(pages_needed, default=0) + extra_pages
    num_used = sum(pages_needed) * num_kv_heads
    num_blocks = num_used + spare_blocks
    kv_pool, buf = guarded((2, num_blocks, PAGE_SIZE, head_dim), dtype)
    perm = torch.randperm(num_blocks, generator=gen)
    tables = torch.full((num_seqs, num_kv_heads, width), -1, dtype=torch.int32)
    i = 0
    for b, n in enumerate(seq_lens):
        for h in range(num_kv_heads):
            for p in range(pages_needed[b]):
                blk = int(perm[i])
                i += 1
                tables[b, h, p] = blk
                valid = min(PAGE_SIZE, n - p * PAGE_SIZE)
                kv_pool[:, blk, :valid] = torch.randn(2, valid, head_dim, generator=gen).to(dtype)
    return PagedKV(kv_pool, buf, tables, torch.tensor(seq_lens, dtype=torch.int32))


def visible(t: int, seq_len: int, window: int, num_sinks: int) -> bool:
    return window <= 0 or t >= seq_len - window or t < num_sinks


def naive_attention(q: torch.Tensor, kv: PagedKV, scale: float, pages: torch.Tensor | None = None,
                    windows: list[int] | None = None, num_sinks: int = 0) -> torch.Tensor:
    """Token-by-token float64 attention; pages [B, H, K] restricts each head to those logical pages."""
    num_seqs, num_heads, head_dim = q.shape
    num_kv_heads, width = kv.block_tables.shape[1:]
    group = num_heads // num_kv_heads
    out = torch.zeros(num_seqs, num_heads, head_dim, dtype=torch.float64)
    for b in range(num_seqs):
        n = int(kv.seq_lens[b])
        for h in range(num_kv_heads):
            allowed = set(range(width)) if pages is None else {int(p) for p in pages[b, h] if 0 <= p < width}
            window = 0 if windows is None else windows[h]
            keys, values = [], []
            for t in range(n):
                blk = int(kv.block_tables[b, h, t // PAGE_SIZE]) if t // PAGE_SIZE < width else -1
                if t // PAGE_SIZE in allowed and 0 <= blk < kv.kv_pool.shape[1] and visible(t, n, window, num_sinks):
                    keys.append(kv.kv_pool[0, blk, t % PAGE_SIZE].double())
                    values.append(kv.kv_pool[1, blk, t % PAGE_SIZE].double())
            if not keys:
                continue
            qh = q[b, h * group:(h + 1) * group].double()
            att = torch.softmax(qh @ torch.stack(keys).T * scale, dim=-1)
            out[b, h * group:(h + 1) * group] = att @ torch.stack(values)
    return out


def assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype) -> None:
    atol, rtol = TOL[dtype]
    torch.testing.assert_close(actual.double(), expected.double(), atol=atol, rtol=rtol)
