"""sparse_paged_decode_attention: decode attention over a per-head list of selected pages
(Quest/FlexiCache top-K plus tail pages); lists are -1 padded, so heads may have different lengths.

Pages are logical indices into each head's block table, so the output of select_topk plugs in
directly, and the table may map them to any pool (e.g. a device pool of resident pages).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from tessera.kernels._decode_common import (DECODE_AUTOTUNE_CONFIGS, LOG2E, _attend_tokens, _store_partial,
                                            decode_ref, plan_splits, reduce_splits)
from tessera.kernels._triton_utils import check_triton_device, upcast_inputs
from tessera.kernels.layout import PAGE_SIZE, SENTINEL, check, check_decode_inputs, check_index


@triton.autotune(configs=DECODE_AUTOTUNE_CONFIGS, key=["D", "GROUP", "UPCAST"])
@triton.jit
def _sparse_decode_kernel(q_ptr, kv_ptr, bt_ptr, len_ptr, sel_ptr, o_ptr, lse_ptr,
                          num_pages_tbl, num_blocks, num_selected, per_split, qk_scale,
                          stride_qb, stride_qh,
                          stride_kv, stride_block, stride_tok,
                          stride_btb, stride_bth,
                          stride_sb, stride_sh,
                          stride_ob, stride_oh, stride_os,
                          stride_lb, stride_lh,
                          GROUP: tl.constexpr, BLOCK_G: tl.constexpr, D: tl.constexpr, PAGE: tl.constexpr,
                          PAGES_PER_ITER: tl.constexpr, UPCAST: tl.constexpr, PRECISION: tl.constexpr):
    b = tl.program_id(0)
    h = tl.program_id(1)
    split = tl.program_id(2)
    BLOCK_N: tl.constexpr = PAGES_PER_ITER * PAGE
    g = tl.arange(0, BLOCK_G)
    d = tl.arange(0, D)
    q = tl.load(q_ptr + b * stride_qb + (h * GROUP + g[:, None]) * stride_qh + d[None, :],
                mask=g[:, None] < GROUP, other=0.0)
    if UPCAST:
        q = q.to(tl.float32)
    seq_len = tl.load(len_ptr + b)
    i_start = split * per_split
    i_end = tl.minimum(i_start + per_split, num_selected)

    m_i = tl.full([BLOCK_G], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_G], tl.float32)
    acc = tl.zeros([BLOCK_G, D], tl.float32)
    tok_entry = tl.arange(0, BLOCK_N) // PAGE
    bt_row = bt_ptr + b * stride_btb + h * stride_bth
    sel_row = sel_ptr + b * stride_sb + h * stride_sh
    for i0 in range(i_start, i_end, PAGES_PER_ITER):
        entry = i0 + tok_entry
        in_list = entry < i_end
        page = tl.load(sel_row + entry, mask=in_list, other=-1)
        m_i, l_i, acc = _attend_tokens(q, m_i, l_i, acc, page, in_list, bt_row, num_pages_tbl,
                                       kv_ptr, stride_kv, stride_block, stride_tok, num_blocks,
                                       seq_len, 0, 0, qk_scale, PAGE, BLOCK_N, D, UPCAST, PRECISION)
    _store_partial(o_ptr, lse_ptr, m_i, l_i, acc, b, h, split,
                   stride_ob, stride_oh, stride_os, stride_lb, stride_lh, GROUP, BLOCK_G, D)


def _check(q, kv_pool, block_tables, seq_lens, pages) -> tuple[int, int]:
    num_kv_heads, group = check_decode_inputs(q, kv_pool, block_tables, seq_lens)
    check_index(pages, "pages", 3, q.device)
    check(pages.shape[:2] == block_tables.shape[:2],
          f"pages must be [num_seqs, num_kv_heads, K] = {list(block_tables.shape[:2])} + [K], got {list(pages.shape)}")
    check(pages.stride(2) == 1, "pages must be contiguous in its last dim")
    return num_kv_heads, group


def sparse_paged_decode_attention(q: torch.Tensor, kv_pool: torch.Tensor, block_tables: torch.Tensor,
                                  seq_lens: torch.Tensor, pages: torch.Tensor, *, scale: float | None = None,
                                  num_splits: int | None = None) -> torch.Tensor:
    """Triton: like paged_decode_attention, but each (seq, KV head) walks its own page list.

    pages int [B, H, K]: logical page indices, -1 padded, no duplicates (a duplicate counts twice).
    """
    num_kv_heads, group = _check(q, kv_pool, block_tables, seq_lens, pages)
    check_triton_device(q)
    num_seqs, num_heads, head_dim = q.shape
    out = torch.empty_like(q, memory_format=torch.contiguous_format)
    if num_seqs == 0:
        return out
    num_splits, per_split = plan_splits(pages.shape[2], num_seqs * num_kv_heads, q.device, num_splits)
    o_part = torch.empty(num_seqs, num_heads, num_splits, head_dim, dtype=torch.float32, device=q.device)
    lse = torch.empty(num_seqs, num_heads, num_splits, dtype=torch.float32, device=q.device)
    scale = head_dim ** -0.5 if scale is None else scale
    _sparse_decode_kernel[(num_seqs, num_kv_heads, num_splits)](
        q, kv_pool, block_tables, seq_lens, pages, o_part, lse,
        block_tables.shape[2], kv_pool.shape[1], pages.shape[2], per_split, scale * LOG2E,
        q.stride(0), q.stride(1),
        kv_pool.stride(0), kv_pool.stride(1), kv_pool.stride(2),
        block_tables.stride(0), block_tables.stride(1),
        pages.stride(0), pages.stride(1),
        o_part.stride(0), o_part.stride(1), o_part.stride(2),
        lse.stride(0), lse.stride(1),
        GROUP=group, BLOCK_G=max(16, triton.next_power_of_2(group)), D=head_dim, PAGE=PAGE_SIZE,
        UPCAST=upcast_inputs(q.dtype), PRECISION="ieee" if q.dtype == torch.float32 else "tf32")
    reduce_splits(o_part, lse, out)
    return out


def sparse_paged_decode_attention_ref(q: torch.Tensor, kv_pool: torch.Tensor, block_tables: torch.Tensor,
                                      seq_lens: torch.Tensor, pages: torch.Tensor, *,
                                      scale: float | None = None) -> torch.Tensor:
    """Torch reference (the CPU path): reads only the listed pages."""
    _check(q, kv_pool, block_tables, seq_lens, pages)
    scale = q.shape[2] ** -0.5 if scale is None else scale
    pages = pages.long()
    pages = torch.where(pages < block_tables.shape[2], pages, SENTINEL)
    blocks = torch.gather(block_tables.long(), 2, pages.clamp(min=0)) if block_tables.shape[2] else pages
    return decode_ref(q, kv_pool, torch.where(pages >= 0, blocks, SENTINEL), pages, seq_lens, scale)
