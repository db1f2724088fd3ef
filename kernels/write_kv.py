"""write_kv: scatter new K/V rows (a prefill chunk, or one decode token per request) into the pool.

Each KV head has its own slot (block * 16 + offset), because every (request, KV head) pages alone.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from tessera.kernels._triton_utils import check_triton_device
from tessera.kernels.layout import PAGE_SIZE, check, check_index, check_kv_pool


@triton.jit
def _write_kv_kernel(kv_ptr, k_ptr, v_ptr, slot_ptr, num_heads, num_slots,
                     stride_kv, stride_block, stride_tok,
                     stride_kt, stride_kh,
                     stride_vt, stride_vh,
                     stride_st, stride_sh,
                     PAGE: tl.constexpr, D: tl.constexpr, BLOCK_H: tl.constexpr):
    t = tl.program_id(0)
    h = tl.arange(0, BLOCK_H)
    d = tl.arange(0, D)
    slot = tl.load(slot_ptr + t * stride_st + h * stride_sh, mask=h < num_heads, other=-1).to(tl.int64)
    ok = (slot >= 0) & (slot < num_slots)  # -1 (padding) and out-of-range slots are skipped
    dst = (slot // PAGE) * stride_block + (slot % PAGE) * stride_tok
    mask = ok[:, None]
    k = tl.load(k_ptr + t * stride_kt + h[:, None] * stride_kh + d[None, :], mask=mask)
    v = tl.load(v_ptr + t * stride_vt + h[:, None] * stride_vh + d[None, :], mask=mask)
    tl.store(kv_ptr + dst[:, None] + d[None, :], k, mask=mask)
    tl.store(kv_ptr + stride_kv + dst[:, None] + d[None, :], v, mask=mask)


def _check(kv_pool, k, v, slot_mapping) -> None:
    _, head_dim = check_kv_pool(kv_pool)
    for name, x in (("k", k), ("v", v)):
        check(x.dim() == 3 and x.shape[2] == head_dim,
              f"{name} must be [num_tokens, num_kv_heads, {head_dim}], got {list(x.shape)}")
        check(x.dtype == kv_pool.dtype, f"{name} dtype {x.dtype} != kv_pool dtype {kv_pool.dtype}")
        check(x.stride(2) == 1, f"{name} must be contiguous in its last dim")
        check(x.device == kv_pool.device, f"{name} is on {x.device}, kv_pool on {kv_pool.device}")
    check(k.shape == v.shape, f"k {list(k.shape)} and v {list(v.shape)} differ")
    check_index(slot_mapping, "slot_mapping", 2, kv_pool.device)
    check(slot_mapping.shape == k.shape[:2],
          f"slot_mapping must be [num_tokens, num_kv_heads] = {list(k.shape[:2])}, got {list(slot_mapping.shape)}")


def write_kv(kv_pool: torch.Tensor, k: torch.Tensor, v: torch.Tensor, slot_mapping: torch.Tensor) -> None:
    """Triton: kv_pool[0|1] at slot_mapping[t, h] <- k|v[t, h]; one program per token, heads vectorised."""
    _check(kv_pool, k, v, slot_mapping)
    check_triton_device(kv_pool)
    num_tokens, num_heads, head_dim = k.shape
    if num_tokens == 0:
        return
    _write_kv_kernel[(num_tokens,)](
        kv_pool, k, v, slot_mapping, num_heads, kv_pool.shape[1] * PAGE_SIZE,
        kv_pool.stride(0), kv_pool.stride(1), kv_pool.stride(2),
        k.stride(0), k.stride(1),
        v.stride(0), v.stride(1),
        slot_mapping.stride(0), slot_mapping.stride(1),
        PAGE=PAGE_SIZE, D=head_dim, BLOCK_H=triton.next_power_of_2(num_heads))


def write_kv_ref(kv_pool: torch.Tensor, k: torch.Tensor, v: torch.Tensor, slot_mapping: torch.Tensor) -> None:
    """Torch reference (the CPU path): one index_copy_ per K and V over the valid slots."""
    _check(kv_pool, k, v, slot_mapping)
    head_dim = kv_pool.shape[3]
    slots = slot_mapping.reshape(-1).long()
    ok = (slots >= 0) & (slots < kv_pool.shape[1] * PAGE_SIZE)
    flat = kv_pool.view(2, -1, head_dim)
    if not bool(ok.all()):
        slots = slots[ok]
        flat[0].index_copy_(0, slots, k.reshape(-1, head_dim)[ok])
        flat[1].index_copy_(0, slots, v.reshape(-1, head_dim)[ok])
    else:
        flat[0].index_copy_(0, slots, k.reshape(-1, head_dim))
        flat[1].index_copy_(0, slots, v.reshape(-1, head_dim))
