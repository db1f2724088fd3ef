"""Checks of the two decode-attention kernels (Triton on the device) against their torch references (CPU):
the edge cases of tests/kernels/test_paged_decode_attention.py and test_sparse_paged_decode_attention.py
(ragged lengths, GQA groups incl. the shipped models' 2 and 3, -1 pages and bad block ids, windows + sinks
per head, page boundaries, more splits than pages, empty batches and lists) plus one long case each that
makes the autotuner choose among its configs.

size "full" is the GPU set; "tiny" a few small cases for the interpreter (the CPU dry run).
"""
from __future__ import annotations

import random

import torch

from tessera.gpu_check.compare import Measure, compare, flag
from tessera.gpu_check.kernel_data import TOL, make_paged_kv, random_page_lists, to_device
from tessera.kernels import dispatch

# (head_dim, group, num_kv_heads): Llama-3-8B-like, MHA, wide groups, SmolLM2 (3:1), tessera-tiny-byte (D 32, 2:1)
SHAPES = {"full": [(128, 4, 2), (128, 1, 1), (128, 8, 2), (64, 4, 2), (64, 3, 3), (32, 2, 2), (64, 1, 2)],
          "tiny": [(64, 4, 2)]}
RANDOM_PER_SHAPE = {"full": 2, "tiny": 1}
LONG_LENS = [2048, 3001, 777, 4096]


def _inputs(lens, num_kv_heads, group, head_dim, dtype, seed, extra_pages=1):
    gen = torch.Generator().manual_seed(seed)
    kv = make_paged_kv(lens, num_kv_heads, head_dim, dtype, gen, extra_pages=extra_pages)
    q = torch.randn(len(lens), num_kv_heads * group, head_dim, generator=gen).to(dtype)
    return kv, q


def _dense(kv, q, device, **kw):
    """(Triton on the device, reference on the CPU) for one dense call."""
    d = to_device(kv, device)
    tri = dispatch.paged_decode_attention(q.to(device), d.kv_pool, d.block_tables, d.seq_lens, impl="triton", **kw)
    kw.pop("num_splits", None)
    ref = dispatch.paged_decode_attention(q, kv.kv_pool, kv.block_tables, kv.seq_lens, impl="ref", **kw)
    return tri, ref


def dense_cases(device: str, dtype: torch.dtype, size: str) -> list[Measure]:
    atol, rtol = TOL[dtype]
    out = []

    def add(case, tri, ref, detail=""):
        out.append(compare("paged_decode_attention", dtype, case, tri, ref, atol, rtol, detail))

    rng = random.Random(11)
    for head_dim, group, heads in SHAPES[size]:
        for _ in range(RANDOM_PER_SHAPE[size]):
            lens = [rng.randint(1, 300 if size == "full" else 40) for _ in range(rng.randint(1, 3))]
            splits = rng.choice([None, 1, 3])
            kv, q = _inputs(lens, heads, group, head_dim, dtype, rng.randrange(10**6))
            add(f"ragged D={head_dim} G={group} Hkv={heads} lens={lens} splits={splits}",
                *_dense(kv, q, device, num_splits=splits))
    for i in range(4 if size == "full" else 1):
        windows = [rng.randint(0, 70), rng.randint(0, 70)]
        per_head, sinks = i % 2 == 0, rng.randint(0, 40)
        lens = [rng.randint(1, 200 if size == "full" else 60) for _ in range(2)]
        window = torch.tensor(windows, dtype=torch.int32) if per_head else windows[0]
        kv, q = _inputs(lens, 2, 4, 64, dtype, 100 + i)
        add(f"window={windows if per_head else windows[0]} sinks={sinks} lens={lens}",
            *_dense(kv, q, device, window=window, num_sinks=sinks, num_splits=2, scale=0.1))
    kv, q = _inputs([100, 37, 16], 2, 4, 64, dtype, 0)
    kv.block_tables[0, 0, 2] = -1
    kv.block_tables[0, 1, 1] = kv.kv_pool.shape[1]  # just past the pool: would read the NaN guard
    kv.block_tables[1] = -1  # nothing to attend: output 0
    tri, ref = _dense(kv, q, device, num_splits=2)
    add("holes, a block id past the pool, a sequence with no pages", tri, ref)
    out.append(flag("paged_decode_attention", dtype, "no pages -> exactly 0", bool((tri[1] == 0).all())))
    if size == "tiny":
        return out
    for seq_len in (15, 16, 17, 32, 33):
        kv, q = _inputs([seq_len, 1], 1, 8, 128, dtype, seq_len, extra_pages=3)
        add(f"page boundary len={seq_len}, 64 splits (clamped, empty splits)", *_dense(kv, q, device, num_splits=64))
    kv, q = _inputs(LONG_LENS, 8, 4, 128, dtype, 7)
    add(f"long: lens={LONG_LENS} Hkv=8 G=4 D=128, CUDA split plan, autotuned", *_dense(kv, q, device))
    pool = torch.zeros(2, 3, 16, 64, dtype=dtype, device=device)
    empty = dispatch.paged_decode_attention(torch.randn(0, 4, 64, device=device).to(dtype), pool,
                                            torch.zeros(0, 1, 5, dtype=torch.int32, device=device),
                                            torch.zeros(0, dtype=torch.int32, device=device), impl="triton")
    no_pages = dispatch.paged_decode_attention(torch.randn(2, 4, 64, device=device).to(dtype), pool,
                                               torch.zeros(2, 1, 0, dtype=torch.int32, device=device),
                                               torch.tensor([5, 1], dtype=torch.int32, device=device), impl="triton")
    out.append(flag("paged_decode_attention", dtype, "empty batch; empty table -> 0",
                    empty.shape == (0, 4, 64) and bool((no_pages == 0).all())))
    return out


def _sparse(kv, q, pages, device, **kw):
    d = to_device(kv, device)
    tri = dispatch.sparse_paged_decode_attention(q.to(device), d.kv_pool, d.block_tables, d.seq_lens,
                                                 pages.to(device), impl="triton", **kw)
    ref = dispatch.sparse_paged_decode_attention(q, kv.kv_pool, kv.block_tables, kv.seq_lens, pages, impl="ref")
    return tri, ref


def sparse_cases(device: str, dtype: torch.dtype, size: str) -> list[Measure]:
    atol, rtol = TOL[dtype]
    name = "sparse_paged_decode_attention"
    out = []

    def add(case, tri, ref):
        out.append(compare(name, dtype, case, tri, ref, atol, rtol))

    rng = random.Random(23)
    for head_dim, group, heads in SHAPES[size]:
        for _ in range(RANDOM_PER_SHAPE[size]):
            lens = [rng.randint(1, 200 if size == "full" else 40) for _ in range(rng.randint(1, 3))]
            k, splits = rng.randint(1, 16), rng.choice([None, 1, 3])
            kv, q = _inputs(lens, heads, group, head_dim, dtype, rng.randrange(10**6))
            pages = random_page_lists(kv, k, rng)
            add(f"page lists D={head_dim} G={group} Hkv={heads} lens={lens} K={k} splits={splits}",
                *_sparse(kv, q, pages, device, num_splits=splits))
    kv, q = _inputs([100], 2, 4, 64, dtype, 5)
    kv.block_tables = kv.block_tables[:, :, :3].contiguous()  # listed pages 3..5 have no column: skipped
    pages = torch.tensor([[[0, 3, 4, 5], [5, 4, 2, -1]]], dtype=torch.int32)
    add("pages past a narrow table", *_sparse(kv, q, pages, device))
    pool = torch.zeros(2, 3, 16, 64, dtype=dtype, device=device)
    none = dispatch.sparse_paged_decode_attention(
        torch.randn(1, 4, 64, device=device).to(dtype), pool, torch.zeros(1, 1, 2, dtype=torch.int32, device=device),
        torch.tensor([20], dtype=torch.int32, device=device), torch.full((1, 1, 3), -1, dtype=torch.int32,
                                                                         device=device), impl="triton")
    out.append(flag(name, dtype, "all-(-1) lists -> 0", bool((none == 0).all())))
    if size == "tiny":
        return out
    kv, q = _inputs([70, 5, 129], 2, 4, 64, dtype, 3)
    d = to_device(kv, device)
    scores = dispatch.score_pages(q.to(device), torch.zeros(kv.kv_pool.shape[1], 2, 64, dtype=dtype, device=device),
                                  d.block_tables, d.seq_lens, impl="triton")
    every = dispatch.select_topk(scores, 50)  # K larger than the number of pages
    tri = dispatch.sparse_paged_decode_attention(q.to(device), d.kv_pool, d.block_tables, d.seq_lens, every,
                                                 impl="triton")
    dense = dispatch.paged_decode_attention(q, kv.kv_pool, kv.block_tables, kv.seq_lens, impl="ref")
    add("every page selected = dense reference", tri, dense)
    kv, q = _inputs(LONG_LENS, 8, 4, 128, dtype, 9)
    add(f"long: lens={LONG_LENS} K=64, CUDA split plan, autotuned",
        *_sparse(kv, q, random_page_lists(kv, 64, rng), device))
    empty = dispatch.sparse_paged_decode_attention(
        torch.randn(0, 4, 64, device=device).to(dtype), pool, torch.zeros(0, 1, 2, dtype=torch.int32, device=device),
        torch.zeros(0, dtype=torch.int32, device=device), torch.zeros(0, 1, 4, dtype=torch.int32, device=device),
        impl="triton")
    out.append(flag(name, dtype, "empty batch", empty.shape == (0, 4, 64)))
    return out
