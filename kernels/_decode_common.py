"""What dense and sparse paged decode attention share: the per-tile online-softmax step, the
split-KV reduce pass, the split plan, and the torch reference core.

Split-KV (flash-decoding): each (seq, KV head) is cut into `num_splits` ranges of pages; each
program writes its range's normalised output and log2-sum-exp, and the reduce pass merges them.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from tessera.kernels._triton_utils import autotune_configs
from tessera.kernels.layout import PAGE_SIZE, check

# Dense and sparse decode kernels share one tuning space (a single config under the interpreter).
DECODE_AUTOTUNE_CONFIGS = autotune_configs([
    triton.Config({"PAGES_PER_ITER": 4}, num_warps=4, num_stages=2),
    triton.Config({"PAGES_PER_ITER": 2}, num_warps=4, num_stages=2),
    triton.Config({"PAGES_PER_ITER": 4}, num_warps=4, num_stages=3),
    triton.Config({"PAGES_PER_ITER": 8}, num_warps=8, num_stages=2)])

MAX_SPLITS = 64
MIN_PAGES_PER_SPLIT = 8  # 128 tokens: less than this is not worth a program and a reduce row
REF_TILE_BYTES = 2 << 20  # reference path: K/V gathered per tile of this many fp32 bytes (L2/L3-sized)
LOG2E = 1.4426950408889634


@triton.jit
def _attend_tokens(q, m_i, l_i, acc, page, tok_ok, bt_row, num_pages_tbl,
                   kv_ptr, stride_kv, stride_block, stride_tok, num_blocks,
                   seq_len, lo, num_sinks, qk_scale,
                   PAGE: tl.constexpr, BLOCK_N: tl.constexpr, D: tl.constexpr,
                   UPCAST: tl.constexpr, PRECISION: tl.constexpr):
    """One online-softmax step over BLOCK_N token slots; slot i is token i % PAGE of logical page
    page[i]. q: [BLOCK_G, D]; m_i, l_i: [BLOCK_G] (log2 domain); acc: [BLOCK_G, D] fp32."""
    j = tl.arange(0, BLOCK_N) % PAGE
    ok = tok_ok & (page >= 0) & (page < num_pages_tbl)
    blk = tl.load(bt_row + page, mask=ok, other=-1).to(tl.int64)
    pos = page * PAGE + j
    ok = ok & (blk >= 0) & (blk < num_blocks) & (pos < seq_len) & ((pos >= lo) | (pos < num_sinks))
    d = tl.arange(0, D)
    k_ptrs = kv_ptr + blk[:, None] * stride_block + j[:, None] * stride_tok + d[None, :]
    k = tl.load(k_ptrs, mask=ok[:, None], other=0.0)
    v = tl.load(k_ptrs + stride_kv, mask=ok[:, None], other=0.0)
    if UPCAST:
        k = k.to(tl.float32)
        v = v.to(tl.float32)
    s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale  # [BLOCK_G, BLOCK_N]
    s = tl.where(ok[None, :], s, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, axis=1))
    m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # nothing valid yet: avoid -inf - -inf
    alpha = tl.exp2(m_i - m_safe)
    p = tl.exp2(s - m_safe[:, None])
    l_i = l_i * alpha + tl.sum(p, axis=1)
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
    return m_new, l_i, acc


@triton.jit
def _store_partial(o_ptr, lse_ptr, m_i, l_i, acc, b, h, split,
                   stride_ob, stride_oh, stride_os, stride_lb, stride_lh,
                   GROUP: tl.constexpr, BLOCK_G: tl.constexpr, D: tl.constexpr):
    g = tl.arange(0, BLOCK_G)
    d = tl.arange(0, D)
    heads = h * GROUP + g
    has = l_i > 0
    out = acc / tl.where(has, l_i, 1.0)[:, None]
    tl.store(o_ptr + b * stride_ob + heads[:, None] * stride_oh + split * stride_os + d[None, :], out,
             mask=g[:, None] < GROUP)
    lse = tl.where(has, m_i + tl.log2(tl.where(has, l_i, 1.0)), float("-inf"))
    tl.store(lse_ptr + b * stride_lb + heads * stride_lh + split, lse, mask=g < GROUP)


@triton.jit
def _reduce_splits_kernel(o_part_ptr, lse_ptr, out_ptr, num_splits,
                          stride_pb, stride_ph, stride_ps, stride_lb, stride_lh, stride_ob, stride_oh,
                          D: tl.constexpr, BLOCK_S: tl.constexpr):
    b = tl.program_id(0)
    h = tl.program_id(1)
    sp = tl.arange(0, BLOCK_S)
    d = tl.arange(0, D)
    lse = tl.load(lse_ptr + b * stride_lb + h * stride_lh + sp, mask=sp < num_splits, other=float("-inf"))
    m = tl.max(lse, axis=0)
    w = tl.exp2(lse - tl.where(m == float("-inf"), 0.0, m))  # empty splits weigh 0
    o = tl.load(o_part_ptr + b * stride_pb + h * stride_ph + sp[:, None] * stride_ps + d[None, :],
                mask=sp[:, None] < num_splits, other=0.0)
    den = tl.sum(w, axis=0)
    out = tl.sum(w[:, None] * o, axis=0) / tl.where(den > 0, den, 1.0)
    tl.store(out_ptr + b * stride_ob + h * stride_oh + d, out.to(out_ptr.dtype.element_ty))


def plan_splits(num_items: int, num_programs: int, device: torch.device,
                num_splits: int | None) -> tuple[int, int]:
    """(num_splits, items_per_split) for `num_items` pages per (seq, KV head).

    Default on CUDA: enough splits for about two programs per SM (flash-decoding); elsewhere 2, so the
    interpreter always exercises the reduce pass.
    """
    if num_items == 0:
        return 1, 1
    if num_splits is None:
        if device.type == "cuda":
            sms = torch.cuda.get_device_properties(device).multi_processor_count
            num_splits = triton.cdiv(2 * sms, max(num_programs, 1))
        else:
            num_splits = 2
        num_splits = min(num_splits, triton.cdiv(num_items, MIN_PAGES_PER_SPLIT))
    check(num_splits >= 1, f"num_splits must be >= 1, got {num_splits}")
    num_splits = max(1, min(num_splits, MAX_SPLITS, num_items))
    per_split = triton.cdiv(num_items, num_splits)
    return triton.cdiv(num_items, per_split), per_split


def reduce_splits(o_part: torch.Tensor, lse: torch.Tensor, out: torch.Tensor) -> None:
    """out[b, h] = lse-weighted mean of o_part[b, h, :]; o_part [B, Hq, S, D], lse [B, Hq, S] (log2)."""
    num_seqs, num_heads, num_splits, head_dim = o_part.shape
    _reduce_splits_kernel[(num_seqs, num_heads)](
        o_part, lse, out, num_splits,
        o_part.stride(0), o_part.stride(1), o_part.stride(2), lse.stride(0), lse.stride(1),
        out.stride(0), out.stride(1),
        D=head_dim, BLOCK_S=triton.next_power_of_2(num_splits))


def window_per_head(window: int | torch.Tensor | None, num_kv_heads: int, device: torch.device) -> torch.Tensor:
    """int32 [num_kv_heads] sliding-window length per KV head; <= 0 means the head sees everything."""
    if window is None:
        return torch.zeros(num_kv_heads, dtype=torch.int32, device=device)
    if isinstance(window, int):
        return torch.full((num_kv_heads,), window, dtype=torch.int32, device=device)
    check(window.shape == (num_kv_heads,), f"window must be an int or [num_kv_heads={num_kv_heads}], "
          f"got {list(window.shape)}")
    return window.to(device=device, dtype=torch.int32).contiguous()


# -------------------------------------------------------------------------------- torch reference
def decode_ref(q: torch.Tensor, kv_pool: torch.Tensor, blocks: torch.Tensor, pages: torch.Tensor,
               seq_lens: torch.Tensor, scale: float, lo: torch.Tensor | None = None,
               num_sinks: torch.Tensor | None = None) -> torch.Tensor:
    """Attention of q [B, Hq, D] over, per (seq, KV head), the listed pages: blocks [B, H, W] physical
    ids and pages [B, H, W] their logical indices (-1: skip). Tokens at positions < lo are dropped
    unless < num_sinks (both [B, H]). Rows with nothing to attend give 0. fp32 math throughout.

    NOTE: K and V are gathered tile by tile into a reused workspace. One gather of everything into a
    fresh tensor is several times slower on CPU: page faults on the new memory and a DRAM round trip.
    """
    num_seqs, num_heads, head_dim = q.shape
    num_kv_heads, width = blocks.shape[1], blocks.shape[2]
    group = num_heads // num_kv_heads
    rows = num_seqs * num_kv_heads
    out = torch.zeros(num_seqs, num_heads, head_dim, dtype=torch.float32, device=q.device)
    if rows == 0 or width == 0:
        return out.to(q.dtype)
    blocks = blocks.long()
    has_block = (pages >= 0) & (blocks >= 0) & (blocks < kv_pool.shape[1])
    pos = pages.long()[..., None] * PAGE_SIZE + torch.arange(PAGE_SIZE, device=q.device)  # [B, H, W, 16]
    ok = has_block[..., None] & (pos < seq_lens.long()[:, None, None, None])
    if lo is not None:
        ok &= (pos >= lo.long()[..., None, None]) | (pos < num_sinks.long()[..., None, None])
    ok = ok.view(rows, width * PAGE_SIZE)
    ids = torch.where(has_block, blocks, 0).view(rows, width)
    qf = q.float().view(rows, group, head_dim) * scale

    scores = torch.empty(rows, width * PAGE_SIZE, group, device=q.device)
    for r0, r1, c0, c1, k in _gather_tiles(kv_pool[0], ids):
        scores[r0:r1, c0 * PAGE_SIZE:c1 * PAGE_SIZE] = torch.bmm(k, qf[r0:r1].transpose(1, 2))
    scores.masked_fill_(~ok[..., None], float("-inf"))
    m = scores.amax(1, keepdim=True)
    p = (scores - torch.where(m == float("-inf"), 0.0, m)).exp_()  # [rows, T, G]
    acc = torch.zeros(rows, group, head_dim, device=q.device)
    for r0, r1, c0, c1, v in _gather_tiles(kv_pool[1], ids):
        tile_ok = ok[r0:r1, c0 * PAGE_SIZE:c1 * PAGE_SIZE]
        if not bool(tile_ok.all()):  # skipped slots may hold anything, even NaN: 0 * NaN = NaN
            v = torch.where(tile_ok[..., None], v, 0.0)
        acc[r0:r1].baddbmm_(p[r0:r1, c0 * PAGE_SIZE:c1 * PAGE_SIZE].transpose(1, 2), v)
    denom = p.sum(1)  # [rows, G]
    acc /= torch.where(denom > 0, denom, 1.0)[..., None]
    return acc.view(num_seqs, num_heads, head_dim).to(q.dtype)


def _gather_tiles(pool: torch.Tensor, ids: torch.Tensor):
    """Yields (r0, r1, c0, c1, tile fp32 [r1 - r0, (c1 - c0) * 16, D]): pool's pages ids[r0:r1, c0:c1].

    Tiles are about REF_TILE_BYTES: several whole rows when a row is small, else a row in chunks.
    The yielded tile is a view of a workspace that the next iteration overwrites.
    """
    rows, width = ids.shape
    page_elems = PAGE_SIZE * pool.shape[-1]
    row_bytes = width * page_elems * 4
    if row_bytes <= REF_TILE_BYTES:
        rows_per_tile, cols = max(1, REF_TILE_BYTES // row_bytes), width
    else:
        rows_per_tile, cols = 1, max(1, REF_TILE_BYTES // (page_elems * 4))
    workspace = torch.empty(min(rows, rows_per_tile) * cols * page_elems, dtype=pool.dtype, device=pool.device)
    upcast = None if pool.dtype == torch.float32 else torch.empty(workspace.numel(), device=pool.device)
    for r0 in range(0, rows, rows_per_tile):
        r1 = min(rows, r0 + rows_per_tile)
        for c0 in range(0, width, cols):
            c1 = min(width, c0 + cols)
            tile_ids = ids[r0:r1, c0:c1].reshape(-1)
            n = tile_ids.numel() * page_elems
            tile = torch.index_select(pool, 0, tile_ids, out=workspace[:n].view(-1, *pool.shape[1:]))
            if upcast is not None:
                tile = upcast[:n].view_as(tile).copy_(tile)
            yield r0, r1, c0, c1, tile.view(r1 - r0, (c1 - c0) * PAGE_SIZE, -1)
