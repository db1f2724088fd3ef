"""update_minmax: element-wise min and max of a full page's 16 keys, into the MinMax pool (Quest).

Called with the blocks that just became full: one per head after a decode step, many after prefill.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from tessera.kernels._triton_utils import check_triton_device
from tessera.kernels.layout import PAGE_SIZE, check, check_kv_pool


@triton.jit
def _update_minmax_kernel(kv_ptr, mm_ptr, ids_ptr, num_ids, num_blocks,
                          stride_block, stride_tok, stride_mb, stride_mm,
                          PAGE: tl.constexpr, D: tl.constexpr, BLOCKS: tl.constexpr):
    # BLOCKS pages per program: few launches for a prefill's thousands of pages.
    i = tl.program_id(0) * BLOCKS + tl.arange(0, BLOCKS)
    blk = tl.load(ids_ptr + i, mask=i < num_ids, other=-1).to(tl.int64)
    ok = (blk >= 0) & (blk < num_blocks)
    tok = tl.arange(0, PAGE)
    d = tl.arange(0, D)
    ptrs = kv_ptr + blk[:, None, None] * stride_block + tok[None, :, None] * stride_tok + d[None, None, :]
    keys = tl.load(ptrs, mask=ok[:, None, None], other=0.0)  # [BLOCKS, PAGE, D], keys are kv_pool[0]
    dst = mm_ptr + blk[:, None] * stride_mb + d[None, :]
    tl.store(dst, tl.min(keys, axis=1), mask=ok[:, None])
    tl.store(dst + stride_mm, tl.max(keys, axis=1), mask=ok[:, None])


def _check(kv_pool, minmax_pool, block_ids) -> None:
    num_blocks, head_dim = check_kv_pool(kv_pool)
    check(minmax_pool.shape == (num_blocks, 2, head_dim),
          f"minmax_pool must be [num_blocks={num_blocks}, 2, {head_dim}], got {list(minmax_pool.shape)}")
    check(minmax_pool.dtype == kv_pool.dtype, f"minmax_pool dtype {minmax_pool.dtype} != kv_pool {kv_pool.dtype}")
    check(minmax_pool.is_contiguous(), "minmax_pool must be contiguous")
    check(block_ids.dtype in (torch.int32, torch.int64), f"block_ids must be int32/int64, got {block_ids.dtype}")
    check(block_ids.device == kv_pool.device, f"block_ids on {block_ids.device}, kv_pool on {kv_pool.device}")


def update_minmax(kv_pool: torch.Tensor, minmax_pool: torch.Tensor, block_ids: torch.Tensor) -> None:
    """Triton: for each valid id b in block_ids (any shape), minmax_pool[b] = (min, max) of K of b."""
    _check(kv_pool, minmax_pool, block_ids)
    check_triton_device(kv_pool)
    ids = block_ids.reshape(-1).contiguous()
    if ids.numel() == 0:
        return
    blocks = 4
    _update_minmax_kernel[(triton.cdiv(ids.numel(), blocks),)](
        kv_pool, minmax_pool, ids, ids.numel(), kv_pool.shape[1],
        kv_pool.stride(1), kv_pool.stride(2), minmax_pool.stride(0), minmax_pool.stride(1),
        PAGE=PAGE_SIZE, D=kv_pool.shape[3], BLOCKS=blocks)


def update_minmax_ref(kv_pool: torch.Tensor, minmax_pool: torch.Tensor, block_ids: torch.Tensor) -> None:
    """Torch reference: gather the pages' keys once, reduce over the 16 tokens, scatter."""
    _check(kv_pool, minmax_pool, block_ids)
    ids = block_ids.reshape(-1).long()
    ids = ids[(ids >= 0) & (ids < kv_pool.shape[1])]
    keys = kv_pool[0].index_select(0, ids)  # [n, 16, D]
    minmax_pool.index_copy_(0, ids, torch.stack((keys.amin(1), keys.amax(1)), dim=1))
