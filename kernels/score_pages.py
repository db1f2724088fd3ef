"""score_pages: Quest's upper bound on the attention logit of each page, from its keys' MinMax.

score(page) = max over the GQA group's query heads of sum_j max(q_j * kmin_j, q_j * kmax_j),
computed as q+ . kmax - q- . kmin (q+ = max(q, 0), q- = max(-q, 0)): two small matmuls.
The current page (which holds the newest token and is not summarised yet) scores +inf; slots past
the sequence or without a block score -inf.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from tessera.kernels._decode_common import REF_TILE_BYTES
from tessera.kernels._triton_utils import autotune_configs, check_triton_device, upcast_inputs
from tessera.kernels.layout import PAGE_SIZE, check, check_query


@triton.autotune(
    configs=autotune_configs([triton.Config({"BLOCK_P": 32}, num_warps=4),
                              triton.Config({"BLOCK_P": 64}, num_warps=4),
                              triton.Config({"BLOCK_P": 128}, num_warps=8)]),
    key=["D", "GROUP", "UPCAST"])
@triton.jit
def _score_pages_kernel(q_ptr, mm_ptr, bt_ptr, len_ptr, out_ptr, num_pages, num_blocks,
                        stride_qb, stride_qh,
                        stride_mb, stride_mm,
                        stride_btb, stride_bth,
                        stride_ob, stride_oh,
                        GROUP: tl.constexpr, BLOCK_G: tl.constexpr, D: tl.constexpr, PAGE: tl.constexpr,
                        BLOCK_P: tl.constexpr, UPCAST: tl.constexpr, PRECISION: tl.constexpr):
    b = tl.program_id(0)
    h = tl.program_id(1)
    p = tl.program_id(2) * BLOCK_P + tl.arange(0, BLOCK_P)
    g = tl.arange(0, BLOCK_G)
    d = tl.arange(0, D)
    q = tl.load(q_ptr + b * stride_qb + (h * GROUP + g[:, None]) * stride_qh + d[None, :],
                mask=g[:, None] < GROUP, other=0.0)  # [BLOCK_G, D]; BLOCK_G >= 16 for tl.dot
    if UPCAST:
        q = q.to(tl.float32)
    seq_len = tl.load(len_ptr + b)
    blk = tl.load(bt_ptr + b * stride_btb + h * stride_bth + p, mask=p < num_pages, other=-1).to(tl.int64)
    ok = (blk >= 0) & (blk < num_blocks) & (p * PAGE < seq_len)
    mm = mm_ptr + blk[None, :] * stride_mb + d[:, None]  # [D, BLOCK_P], transposed for the dot
    kmin = tl.load(mm, mask=ok[None, :], other=0.0)
    kmax = tl.load(mm + stride_mm, mask=ok[None, :], other=0.0)
    if UPCAST:
        kmin = kmin.to(tl.float32)
        kmax = kmax.to(tl.float32)
    zero = tl.zeros_like(q)
    s = tl.dot(tl.maximum(q, zero), kmax, input_precision=PRECISION)
    s -= tl.dot(tl.maximum(-q, zero), kmin, input_precision=PRECISION)  # [BLOCK_G, BLOCK_P] fp32
    s = tl.where(g[:, None] < GROUP, s, float("-inf"))
    score = tl.max(s, axis=0)
    score = tl.where(ok, score, float("-inf"))
    score = tl.where(p == (seq_len - 1) // PAGE, float("inf"), score)
    tl.store(out_ptr + b * stride_ob + h * stride_oh + p, score, mask=p < num_pages)


def _check(q, minmax_pool, block_tables, seq_lens) -> tuple[int, int]:
    check(minmax_pool.dim() == 3 and minmax_pool.shape[1] == 2,
          f"minmax_pool must be [num_blocks, 2, head_dim], got {list(minmax_pool.shape)}")
    check(minmax_pool.is_contiguous(), "minmax_pool must be contiguous")
    check(minmax_pool.device == q.device, f"minmax_pool on {minmax_pool.device}, q on {q.device}")
    return check_query(q, minmax_pool.dtype, minmax_pool.shape[2], block_tables, seq_lens)


def score_pages(q: torch.Tensor, minmax_pool: torch.Tensor, block_tables: torch.Tensor,
                seq_lens: torch.Tensor) -> torch.Tensor:
    """Triton: one program per (seq, KV head, BLOCK_P pages); all the group's query heads at once."""
    num_kv_heads, group = _check(q, minmax_pool, block_tables, seq_lens)
    check_triton_device(q)
    num_seqs, _, num_pages = block_tables.shape
    out = torch.empty(num_seqs, num_kv_heads, num_pages, dtype=torch.float32, device=q.device)
    if out.numel() == 0:
        return out
    grid = lambda meta: (num_seqs, num_kv_heads, triton.cdiv(num_pages, meta["BLOCK_P"]))  # noqa: E731
    _score_pages_kernel[grid](
        q, minmax_pool, block_tables, seq_lens, out, num_pages, minmax_pool.shape[0],
        q.stride(0), q.stride(1),
        minmax_pool.stride(0), minmax_pool.stride(1),
        block_tables.stride(0), block_tables.stride(1),
        out.stride(0), out.stride(1),
        GROUP=group, BLOCK_G=max(16, triton.next_power_of_2(group)), D=q.shape[2], PAGE=PAGE_SIZE,
        UPCAST=upcast_inputs(q.dtype), PRECISION="ieee" if q.dtype == torch.float32 else "tf32")
    return out


def score_pages_ref(q: torch.Tensor, minmax_pool: torch.Tensor, block_tables: torch.Tensor,
                    seq_lens: torch.Tensor) -> torch.Tensor:
    """Torch reference: per tile of (seq, KV head) rows, gather the MinMax rows into a reused
    workspace with index_select and score them with two batched matmuls."""
    num_kv_heads, group = _check(q, minmax_pool, block_tables, seq_lens)
    num_seqs, _, num_pages = block_tables.shape
    head_dim = q.shape[2]
    rows = num_seqs * num_kv_heads
    blk = block_tables.long()
    pages = torch.arange(num_pages, device=q.device)
    lens = seq_lens.long()[:, None, None]
    ok = (blk >= 0) & (blk < minmax_pool.shape[0]) & (pages * PAGE_SIZE < lens)
    ids = torch.where(ok, blk, 0).view(rows, num_pages)
    qg = q.float().view(rows, group, head_dim)
    q_pos, q_neg = qg.clamp(min=0).transpose(1, 2), (-qg).clamp(min=0).transpose(1, 2)  # [rows, D, G]
    score = torch.empty(rows, num_pages, device=q.device)
    rows_per_tile = max(1, (REF_TILE_BYTES // (2 * head_dim * 4)) // max(num_pages, 1))
    workspace = torch.empty(min(rows, rows_per_tile) * num_pages * 2 * head_dim, dtype=minmax_pool.dtype,
                            device=q.device)
    for r0 in range(0, rows, rows_per_tile):
        r1 = min(rows, r0 + rows_per_tile)
        n = (r1 - r0) * num_pages * 2 * head_dim
        mm = torch.index_select(minmax_pool, 0, ids[r0:r1].reshape(-1), out=workspace[:n].view(-1, 2, head_dim))
        mm = mm.float().view(r1 - r0, num_pages, 2, head_dim)
        s = torch.bmm(mm[:, :, 1], q_pos[r0:r1]) - torch.bmm(mm[:, :, 0], q_neg[r0:r1])  # [tile, P, G]
        score[r0:r1] = s.amax(2)
    score = score.view(num_seqs, num_kv_heads, num_pages).masked_fill(~ok, float("-inf"))
    return score.masked_fill(pages == (lens - 1) // PAGE_SIZE, float("inf"))
