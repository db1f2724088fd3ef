"""copy_blocks: copy (src block, dst block) pairs of K and V between two pools, or inside one pool,
for offload to host memory and reload to the device.

On CUDA one Triton launch does the whole batch on the caller's stream, so it overlaps with compute.
A host pool must then be pinned: pinned memory is mapped into the GPU's address space (UVA), so the
kernel reads and writes it directly over PCIe, and no staging buffer or host-side scatter is needed.
"""
from __future__ import annotations

import contextlib

import torch
import triton
import triton.language as tl

from tessera.kernels._triton_utils import INTERPRET
from tessera.kernels.layout import check, check_kv_pool


@triton.jit
def _copy_blocks_kernel(src_ptr, dst_ptr, src_ids_ptr, dst_ids_ptr, num_src_blocks, num_dst_blocks,
                        src_stride_kv, src_stride_block, dst_stride_kv, dst_stride_block,
                        BLOCK_ELEMS: tl.constexpr, CHUNK: tl.constexpr):
    i = tl.program_id(0)
    kv = tl.program_id(1)  # 0: K, 1: V
    src = tl.load(src_ids_ptr + i).to(tl.int64)
    dst = tl.load(dst_ids_ptr + i).to(tl.int64)
    ok = (src >= 0) & (src < num_src_blocks) & (dst >= 0) & (dst < num_dst_blocks)
    src_base = src_ptr + kv * src_stride_kv + src * src_stride_block
    dst_base = dst_ptr + kv * dst_stride_kv + dst * dst_stride_block
    for e0 in range(0, BLOCK_ELEMS, CHUNK):
        e = e0 + tl.arange(0, CHUNK)
        mask = ok & (e < BLOCK_ELEMS)
        tl.store(dst_base + e, tl.load(src_base + e, mask=mask), mask=mask)


def _check(src_pool, dst_pool, src_ids, dst_ids) -> None:
    check_kv_pool(src_pool, "src_pool")
    check_kv_pool(dst_pool, "dst_pool")
    check(src_pool.shape[2:] == dst_pool.shape[2:] and src_pool.dtype == dst_pool.dtype,
          f"pools differ: src {list(src_pool.shape)} {src_pool.dtype}, dst {list(dst_pool.shape)} {dst_pool.dtype}")
    for name, ids in (("src_ids", src_ids), ("dst_ids", dst_ids)):
        check(ids.dtype in (torch.int32, torch.int64) and ids.dim() == 1,
              f"{name} must be a 1-d int32/int64 tensor, got {ids.dtype} {list(ids.shape)}")
    check(src_ids.shape == dst_ids.shape, f"src_ids {list(src_ids.shape)} and dst_ids {list(dst_ids.shape)} differ")


def copy_blocks(src_pool: torch.Tensor, dst_pool: torch.Tensor, src_ids: torch.Tensor, dst_ids: torch.Tensor,
                *, stream: torch.cuda.Stream | None = None) -> None:
    """Triton: dst_pool[:, dst_ids[i]] = src_pool[:, src_ids[i]]; one program per (pair, K|V).

    On CUDA, a CPU pool must be pinned, and the copy is asynchronous on `stream` (default: current
    stream): record an event on it before reading a host block or reusing a source block. A side
    `stream` first waits for the caller's current stream (the copy sees every write queued before the
    call, e.g. this step's K/V), and CUDA id tensors are marked as used on it (record_stream), so the
    caller may drop them at once.
    Pairs with an id out of range (e.g. -1) are skipped. Overlapping src/dst pairs in one pool race.
    """
    _check(src_pool, dst_pool, src_ids, dst_ids)
    device = src_pool.device if src_pool.is_cuda else dst_pool.device
    if device.type == "cpu":
        check(INTERPRET, "copy_blocks (Triton) got only CPU pools: set TRITON_INTERPRET=1 or use impl='ref'")
    else:
        for name, pool in (("src_pool", src_pool), ("dst_pool", dst_pool)):
            check(pool.is_cuda or pool.is_pinned(), f"{name} is in pageable host memory: pin it "
                  "(torch.empty(..., pin_memory=True)) so the GPU can reach it")
            check(not pool.is_cuda or pool.device == device, f"pools are on two GPUs: {src_pool.device}, {dst_pool.device}")
    if src_ids.numel() == 0:
        return
    on_cuda = device.type == "cuda"
    if on_cuda and stream is not None:
        caller = torch.cuda.current_stream(device)
        if stream != caller:
            stream.wait_stream(caller)  # no host sync; orders the copy after the caller's queued work
            for ids in (src_ids, dst_ids):
                if ids.is_cuda:
                    ids.record_stream(stream)
    stream_ctx = torch.cuda.stream(stream) if (stream is not None and on_cuda) else contextlib.nullcontext()
    device_ctx = torch.cuda.device(device) if on_cuda else contextlib.nullcontext()
    with device_ctx, stream_ctx:
        # The kernel indexes ids with stride 1: make them contiguous (a no-op for the usual 1-d tensors).
        src_ids = src_ids.to(device, non_blocking=True).contiguous()
        dst_ids = dst_ids.to(device, non_blocking=True).contiguous()
        block_elems = src_pool[0, 0].numel()
        _copy_blocks_kernel[(src_ids.numel(), 2)](
            src_pool, dst_pool, src_ids, dst_ids, src_pool.shape[1], dst_pool.shape[1],
            src_pool.stride(0), src_pool.stride(1), dst_pool.stride(0), dst_pool.stride(1),
            BLOCK_ELEMS=block_elems, CHUNK=min(2048, triton.next_power_of_2(block_elems)))


def copy_blocks_ref(src_pool: torch.Tensor, dst_pool: torch.Tensor, src_ids: torch.Tensor,
                    dst_ids: torch.Tensor) -> None:
    """Torch reference (the CPU path, and a synchronous fallback anywhere): index_select + index_copy_."""
    _check(src_pool, dst_pool, src_ids, dst_ids)
    src_ids = src_ids.long().to(src_pool.device)
    dst_ids = dst_ids.long().to(src_pool.device)
    ok = (src_ids >= 0) & (src_ids < src_pool.shape[1]) & (dst_ids >= 0) & (dst_ids < dst_pool.shape[1])
    if not bool(ok.all()):
        src_ids, dst_ids = src_ids[ok], dst_ids[ok]
    blocks = src_pool.index_select(1, src_ids).to(dst_pool.device)
    dst_pool.index_copy_(1, dst_ids.to(dst_pool.device), blocks)
