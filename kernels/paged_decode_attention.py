"""paged_decode_attention: one query token per request attends over every page of its KV heads'
block tables (GQA), split-KV with a reduce pass; optional sliding window + sinks per KV head.

With a window w > 0 on a KV head, token t of a sequence of length L is seen iff t >= L - w or
t < num_sinks (StreamingLLM); pages wholly outside are skipped, not just masked.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from tessera.kernels._decode_common import (DECODE_AUTOTUNE_CONFIGS, LOG2E, _attend_tokens, _store_partial,
                                            decode_ref, dense_decode_ref, plan_splits, reduce_splits,
                                            window_per_head)
from tessera.kernels._triton_utils import check_triton_device, upcast_inputs
from tessera.kernels.layout import PAGE_SIZE, SENTINEL, check, check_decode_inputs


@triton.autotune(configs=DECODE_AUTOTUNE_CONFIGS, key=["D", "GROUP", "UPCAST"])
@triton.jit
def _paged_decode_kernel(q_ptr, kv_ptr, bt_ptr, len_ptr, win_ptr, o_ptr, lse_ptr,
                         num_pages_tbl, num_blocks, pages_per_split, num_sinks, qk_scale,
                         stride_qb, stride_qh,
                         stride_kv, stride_block, stride_tok,
                         stride_btb, stride_bth,
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
                mask=g[:, None] < GROUP, other=0.0)  # [BLOCK_G, D], BLOCK_G >= 16 for tl.dot
    if UPCAST:
        q = q.to(tl.float32)
    seq_len = tl.load(len_ptr + b)
    window = tl.load(win_ptr + h)
    lo = tl.where(window > 0, tl.maximum(seq_len - window, 0), 0)
    sinks = tl.where(window > 0, num_sinks, 0)
    num_pages = tl.minimum(tl.cdiv(seq_len, PAGE), num_pages_tbl)
    p_start = split * pages_per_split
    p_end = tl.minimum(p_start + pages_per_split, num_pages)
    # Pages in [sink_end, window_start) hold no visible token: two loops skip them.
    sink_end = tl.minimum(p_end, tl.cdiv(sinks, PAGE))
    window_start = tl.maximum(tl.maximum(p_start, sink_end), lo // PAGE)

    m_i = tl.full([BLOCK_G], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_G], tl.float32)
    acc = tl.zeros([BLOCK_G, D], tl.float32)
    tok_page = tl.arange(0, BLOCK_N) // PAGE
    bt_row = bt_ptr + b * stride_btb + h * stride_bth
    for p0 in range(p_start, sink_end, PAGES_PER_ITER):
        page = p0 + tok_page
        m_i, l_i, acc = _attend_tokens(q, m_i, l_i, acc, page, page < sink_end, bt_row, num_pages_tbl,
                                       kv_ptr, stride_kv, stride_block, stride_tok, num_blocks,
                                       seq_len, lo, sinks, qk_scale, PAGE, BLOCK_N, D, UPCAST, PRECISION)
    for p0 in range(window_start, p_end, PAGES_PER_ITER):
        page = p0 + tok_page
        m_i, l_i, acc = _attend_tokens(q, m_i, l_i, acc, page, page < p_end, bt_row, num_pages_tbl,
                                       kv_ptr, stride_kv, stride_block, stride_tok, num_blocks,
                                       seq_len, lo, sinks, qk_scale, PAGE, BLOCK_N, D, UPCAST, PRECISION)
    _store_partial(o_ptr, lse_ptr, m_i, l_i, acc, b, h, split,
                   stride_ob, stride_oh, stride_os, stride_lb, stride_lh, GROUP, BLOCK_G, D)


def _check(q, kv_pool, block_tables, seq_lens, num_sinks) -> tuple[int, int]:
    num_kv_heads, group = check_decode_inputs(q, kv_pool, block_tables, seq_lens)
    check(num_sinks >= 0, f"num_sinks must be >= 0, got {num_sinks}")
    return num_kv_heads, group


def paged_decode_attention(q: torch.Tensor, kv_pool: torch.Tensor, block_tables: torch.Tensor,
                           seq_lens: torch.Tensor, *, scale: float | None = None,
                           window: int | torch.Tensor | None = None, num_sinks: int = 0,
                           num_splits: int | None = None) -> torch.Tensor:
    """Triton: grid (seq, KV head, split), the GQA group's query heads in one tile; then the reduce.

    q [B, Hq, D]; kv_pool [2, N, 16, D]; block_tables int [B, H, P]; seq_lens int [B] -> [B, Hq, D].
    """
    num_kv_heads, group = _check(q, kv_pool, block_tables, seq_lens, num_sinks)
    check_triton_device(q)
    num_seqs, num_heads, head_dim = q.shape
    out = torch.empty_like(q, memory_format=torch.contiguous_format)
    if num_seqs == 0:
        return out
    num_splits, per_split = plan_splits(block_tables.shape[2], num_seqs * num_kv_heads, q.device, num_splits)
    o_part = torch.empty(num_seqs, num_heads, num_splits, head_dim, dtype=torch.float32, device=q.device)
    lse = torch.empty(num_seqs, num_heads, num_splits, dtype=torch.float32, device=q.device)
    windows = window_per_head(window, num_kv_heads, q.device)
    scale = head_dim ** -0.5 if scale is None else scale
    _paged_decode_kernel[(num_seqs, num_kv_heads, num_splits)](
        q, kv_pool, block_tables, seq_lens, windows, o_part, lse,
        block_tables.shape[2], kv_pool.shape[1], per_split, num_sinks, scale * LOG2E,
        q.stride(0), q.stride(1),
        kv_pool.stride(0), kv_pool.stride(1), kv_pool.stride(2),
        block_tables.stride(0), block_tables.stride(1),
        o_part.stride(0), o_part.stride(1), o_part.stride(2),
        lse.stride(0), lse.stride(1),
        GROUP=group, BLOCK_G=max(16, triton.next_power_of_2(group)), D=head_dim, PAGE=PAGE_SIZE,
        UPCAST=upcast_inputs(q.dtype), PRECISION="ieee" if q.dtype == torch.float32 else "tf32")
    reduce_splits(o_part, lse, out)
    return out


def paged_decode_attention_ref(q: torch.Tensor, kv_pool: torch.Tensor, block_tables: torch.Tensor,
                               seq_lens: torch.Tensor, *, scale: float | None = None,
                               window: int | torch.Tensor | None = None, num_sinks: int = 0) -> torch.Tensor:
    """Torch reference (the CPU path). Pages with no visible token are never read: with every KV head
    windowed, only sink and window pages are even listed."""
    num_kv_heads, _ = _check(q, kv_pool, block_tables, seq_lens, num_sinks)
    num_seqs, _, head_dim = q.shape
    scale = head_dim ** -0.5 if scale is None else scale
    if window is None or (isinstance(window, int) and window <= 0):  # every page, in order
        return dense_decode_ref(q, kv_pool, block_tables, seq_lens, scale)
    windows = window_per_head(window, num_kv_heads, q.device).long()
    lens = seq_lens.long()[:, None]
    lo = torch.where(windows > 0, (lens - windows).clamp(min=0), 0)  # [B, H]
    sinks = torch.where(windows > 0, num_sinks, 0).expand(num_seqs, -1)
    pages = _visible_pages(block_tables.shape[2], windows, num_sinks, lo)
    blocks = torch.gather(block_tables.long(), 2, pages.clamp(min=0)) if pages.shape[2] else pages
    return decode_ref(q, kv_pool, torch.where(pages >= 0, blocks, SENTINEL), pages, seq_lens, scale, lo, sinks)


def _visible_pages(num_pages: int, windows: torch.Tensor, num_sinks: int, lo: torch.Tensor) -> torch.Tensor:
    """Logical pages [B, H, W] that can hold a visible token (-1: none): all P, or sinks + window."""
    num_seqs = lo.shape[0]
    all_pages = torch.arange(num_pages, device=lo.device).expand(num_seqs, windows.shape[0], -1)
    if not bool((windows > 0).all()):
        return all_pages
    sink_pages = triton.cdiv(num_sinks, PAGE_SIZE)
    width = sink_pages + triton.cdiv(int(windows.max()), PAGE_SIZE) + 1
    if width >= num_pages:
        return all_pages
    i = torch.arange(width, device=lo.device)
    window_start = (lo // PAGE_SIZE)[..., None]  # [B, H, 1]
    pages = torch.where(i < sink_pages, i, window_start + i - sink_pages)
    keep = torch.where(i < sink_pages, pages < window_start, pages < num_pages)  # no page twice
    return torch.where(keep, pages, SENTINEL)
