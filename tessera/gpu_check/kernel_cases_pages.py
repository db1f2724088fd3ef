"""Checks of the page kernels (Triton on the device) against their torch references (CPU), with the edge
cases of tests/kernels: write_kv (skipped and out-of-pool slots, strided K/V), update_minmax (-1 and
out-of-pool ids), score_pages (ragged tables, a block id past the pool, +inf current page), select_topk
(device vs CPU, padding), copy_blocks (skipped pairs, one pool, device <-> pinned host on a side stream,
pageable memory refused). Writers must leave the guards around their pools untouched.
"""
from __future__ import annotations

import random

import torch

from tessera.gpu_check.compare import Measure, compare, flag
from tessera.gpu_check.kernel_data import SCORE_TOL, guarded, guarded_on, guards_intact, make_paged_kv, to_device
from tessera.kernels import dispatch
from tessera.kernels.layout import PAGE_SIZE

SEEDS = {"full": range(6), "tiny": range(1)}


def write_kv_cases(device: str, dtype: torch.dtype, size: str) -> list[Measure]:
    out = []
    for seed in SEEDS[size]:
        rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
        heads, tokens, head_dim = rng.randint(1, 5), rng.choice([0, 1, 7, 40]), rng.choice([64, 128])
        strided = seed % 2 == 1
        num_blocks = max(8, tokens * heads // PAGE_SIZE + 1)
        slots = torch.randperm(num_blocks * PAGE_SIZE, generator=gen)[:tokens * heads].view(tokens, heads)
        slots[torch.rand(slots.shape, generator=gen) < 0.15] = -1
        slots[torch.rand(slots.shape, generator=gen) < 0.05] = num_blocks * PAGE_SIZE + 3  # past the pool
        qkv = torch.randn(tokens, 3 * heads, head_dim, generator=gen).to(dtype)
        k, v = qkv[:, :heads], qkv[:, heads:2 * heads]
        if not strided:
            k, v = k.contiguous(), v.contiguous()
        slots = slots.to(torch.int32)
        ref, _ = guarded((2, num_blocks, PAGE_SIZE, head_dim), dtype, fill=7.0)
        dispatch.write_kv(ref, k, v, slots, impl="ref")
        pool, buf = guarded_on((2, num_blocks, PAGE_SIZE, head_dim), dtype, device, fill=7.0)
        dispatch.write_kv(pool, k.to(device), v.to(device), slots.to(device), impl="triton")
        case = f"T={tokens} Hkv={heads} D={head_dim}{' strided K/V' if strided else ''}"
        out.append(compare("write_kv", dtype, case, pool, ref))
        out.append(flag("write_kv", dtype, case + ": guards intact", guards_intact(buf.cpu(), fill=7.0)))
    return out


def update_minmax_cases(device: str, dtype: torch.dtype, size: str) -> list[Measure]:
    out = []
    for seed in SEEDS[size]:
        rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
        num_blocks, head_dim, n = 12, rng.choice([64, 128]), rng.randint(0, 11)
        kv = torch.randn(2, num_blocks, 16, head_dim, generator=gen).to(dtype)
        ids = torch.randperm(num_blocks, generator=gen)[:n]
        ids[torch.rand(n, generator=gen) < 0.2] = -1
        ids[torch.rand(n, generator=gen) < 0.1] = num_blocks  # past the pool: skipped
        ref, _ = guarded((num_blocks, 2, head_dim), dtype)
        dispatch.update_minmax(kv, ref, ids.to(torch.int32), impl="ref")
        mm, buf = guarded_on((num_blocks, 2, head_dim), dtype, device)
        dispatch.update_minmax(kv.to(device), mm, ids.to(torch.int32).to(device), impl="triton")
        case = f"{n} ids D={head_dim}"
        out.append(compare("update_minmax", dtype, case + " (untouched blocks stay NaN)", mm, ref))
        out.append(flag("update_minmax", dtype, case + ": guards intact", guards_intact(buf.cpu())))
    return out


def score_pages_cases(device: str, dtype: torch.dtype, size: str) -> list[Measure]:
    out = []
    shapes = [(128, 4, 2), (64, 3, 3), (32, 2, 2), (128, 8, 1), (64, 1, 2)] if size == "full" else [(64, 4, 2)]
    for seed, (head_dim, group, heads) in enumerate(shapes):
        rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
        lens = [rng.randint(1, 300) for _ in range(rng.randint(1, 3))]
        kv = make_paged_kv(lens, heads, head_dim, dtype, gen, extra_pages=2)
        kv.block_tables[0, 0, 0] = kv.kv_pool.shape[1]  # past the pool: -inf (unless it is the current page)
        minmax, _ = guarded((kv.kv_pool.shape[1], 2, head_dim), dtype, fill=1000.0)
        minmax.copy_(torch.randn(minmax.shape, generator=gen).sort(dim=1).values)
        q = torch.randn(len(lens), heads * group, head_dim, generator=gen).to(dtype)
        ref = dispatch.score_pages(q, minmax, kv.block_tables, kv.seq_lens, impl="ref")
        mm_dev, _ = guarded_on(tuple(minmax.shape), dtype, device, fill=1000.0)
        mm_dev.copy_(minmax.to(device))
        d = to_device(kv, device)
        tri = dispatch.score_pages(q.to(device), mm_dev, d.block_tables, d.seq_lens, impl="triton")
        tol = SCORE_TOL[dtype]
        out.append(compare("score_pages", dtype, f"D={head_dim} G={group} Hkv={heads} lens={lens}", tri, ref, tol, tol))
    empty = dispatch.score_pages(torch.zeros(0, 4, 64, dtype=dtype, device=device),
                                 torch.zeros(3, 2, 64, dtype=dtype, device=device),
                                 torch.zeros(0, 1, 4, dtype=torch.int32, device=device),
                                 torch.zeros(0, dtype=torch.int32, device=device), impl="triton")
    out.append(flag("score_pages", dtype, "empty batch", empty.shape == (0, 1, 4)))
    return out


def select_topk_cases(device: str, dtype: torch.dtype, size: str) -> list[Measure]:
    """Plain torch on every device: the device's topk/sort must pick the CPU's pages (scores are fp32)."""
    out = []
    inf = float("inf")
    scores = torch.tensor([[[0.5, inf, -inf, 2.0, 1.0], [-inf, -inf, inf, -inf, -inf]]])
    for k, want in ((3, [[[1, 3, 4], [2, -1, -1]]]), (8, [[[0, 1, 3, 4, -1, -1, -1, -1], [2] + [-1] * 7]])):
        got = dispatch.select_topk(scores.to(device), k).cpu()
        ok = got.tolist() == want and got.dtype == torch.int32
        out.append(flag("select_topk", dtype, f"padding and order, k={k}", ok))
    gen = torch.Generator().manual_seed(0)
    big = torch.randn(4, 8, 300, generator=gen)  # distinct values: no ties
    big[torch.rand(big.shape, generator=gen) < 0.3] = -inf
    big[:, :, 7] = inf
    for k in (1, 16, 64) if size == "full" else (16,):
        out.append(compare("select_topk", dtype, f"random scores [4, 8, 300], k={k}",
                           dispatch.select_topk(big.to(device), k), dispatch.select_topk(big, k)))
    return out


def copy_blocks_cases(device: str, dtype: torch.dtype, size: str) -> list[Measure]:
    out = []
    for seed in SEEDS[size]:
        gen = torch.Generator().manual_seed(seed)
        same, head_dim, pairs = seed % 2 == 1, (64, 128)[seed % 2], [0, 1, 3, 5, 5, 4][seed]
        num_src = 10
        num_dst = num_src if same else 14
        src_cpu = torch.randn(2, num_src, 16, head_dim, generator=gen).to(dtype)
        order = torch.randperm(num_src, generator=gen)
        src_ids = order[:pairs].clone()
        dst_ids = order[pairs:2 * pairs].clone() if same else torch.randperm(num_dst, generator=gen)[:pairs]
        for i, (ids, bad) in enumerate(((dst_ids, -1), (dst_ids, num_dst), (src_ids, num_src))):
            if i < pairs:
                ids[i] = bad  # skipped pairs: -1, or just past a pool's end (into its guard)
        ref, _ = guarded((2, num_dst, 16, head_dim), dtype, fill=3.0)
        if same:
            ref.copy_(src_cpu)
        dispatch.copy_blocks(ref if same else src_cpu, ref, src_ids, dst_ids.to(torch.int32), impl="ref")
        dst, buf = guarded_on((2, num_dst, 16, head_dim), dtype, device, fill=3.0)
        src = dst if same else src_cpu.to(device)
        if same:
            dst.copy_(src_cpu.to(device))
        dispatch.copy_blocks(src, dst, src_ids.to(device), dst_ids.to(torch.int32).to(device), impl="triton")
        case = f"{pairs} pairs D={head_dim}{' inside one pool' if same else ''}"
        out.append(compare("copy_blocks", dtype, case, dst, ref))
        out.append(flag("copy_blocks", dtype, case + ": guards intact", guards_intact(buf.cpu(), fill=3.0)))
    if device == "cuda":
        out += _host_round_trip(dtype)
    return out


def _host_round_trip(dtype: torch.dtype) -> list[Measure]:
    """Offload to a pinned host pool and reload on a side stream, ids from the host (as runtime/kv_cache.py
    uploads them) and non-contiguous CUDA ids; a pageable host pool must be refused with a clear error."""
    out = []
    device_pool = torch.randn(2, 32, 16, 128, device="cuda").to(dtype)
    host_pool = torch.zeros(2, 16, 16, 128, dtype=dtype, pin_memory=True)
    stream = torch.cuda.Stream()
    ids = torch.tensor([3, 9, 27])
    pairs = torch.tensor([[0, 4], [1, 5], [2, 6]], device="cuda")  # columns: stride 2 (non-contiguous)
    dispatch.copy_blocks(device_pool, host_pool, ids, torch.tensor([0, 1, 2]), stream=stream)
    dispatch.copy_blocks(host_pool, device_pool, pairs[:, 0], pairs[:, 1], stream=stream)
    stream.synchronize()
    out.append(compare("copy_blocks", dtype, "device -> pinned host (side stream)", host_pool[:, :3],
                       device_pool[:, ids].cpu()))
    out.append(compare("copy_blocks", dtype, "pinned host -> device (side stream, strided CUDA ids)",
                       device_pool[:, 4:7], device_pool[:, ids]))
    pageable = torch.zeros(2, 4, 16, 128, dtype=dtype)
    try:
        dispatch.copy_blocks(device_pool, pageable, torch.tensor([0]), torch.tensor([0]))
        refused = False
    except ValueError as err:
        refused = "pin it" in str(err)
    out.append(flag("copy_blocks", dtype, "pageable host pool refused with a clear error", refused))
    return out
