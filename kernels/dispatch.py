"""One entry point per kernel op: picks the Triton kernel or the torch reference for the inputs.

The runtime calls these functions only. Rule (``impl="auto"``, the default):
- CUDA tensors -> Triton;
- CPU tensors -> the torch reference, EVEN WHEN ``TRITON_INTERPRET=1`` is set, because the CPU
  runtime uses the reference and the interpreter is orders of magnitude too slow for it.
Tests force a path with ``impl="triton"`` (CPU tensors then run in the interpreter, which must have
been switched on before import) or ``impl="ref"``, per call or for a block with ``use_impl``.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Literal

import torch

from tessera.kernels import copy_blocks as _copy
from tessera.kernels import paged_decode_attention as _dense
from tessera.kernels import score_pages as _score
from tessera.kernels import select_topk as _topk
from tessera.kernels import sparse_paged_decode_attention as _sparse
from tessera.kernels import update_minmax as _minmax
from tessera.kernels import write_kv as _write

Impl = Literal["auto", "triton", "ref"]
_default_impl: list[Impl] = ["auto"]


@contextlib.contextmanager
def use_impl(impl: Impl) -> Iterator[None]:
    """Within the block, calls without an explicit ``impl`` use this one."""
    _check_impl(impl)
    _default_impl.append(impl)
    try:
        yield
    finally:
        _default_impl.pop()


def resolve_impl(impl: Impl | None, *tensors: torch.Tensor) -> Literal["triton", "ref"]:
    impl = _default_impl[-1] if impl is None else impl
    _check_impl(impl)
    if impl == "auto":
        return "triton" if any(t.is_cuda for t in tensors) else "ref"
    return impl


def _check_impl(impl: str) -> None:
    if impl not in ("auto", "triton", "ref"):
        raise ValueError(f"impl must be 'auto', 'triton' or 'ref', got {impl!r}")


# ---------------------------------------------------------------------------------------- the ops
def write_kv(kv_pool: torch.Tensor, k: torch.Tensor, v: torch.Tensor, slot_mapping: torch.Tensor,
             *, impl: Impl | None = None) -> None:
    """Scatter k, v [T, num_kv_heads, D] into kv_pool at slot_mapping [T, num_kv_heads] (-1: skip)."""
    fn = _write.write_kv if resolve_impl(impl, kv_pool) == "triton" else _write.write_kv_ref
    fn(kv_pool, k, v, slot_mapping)


def update_minmax(kv_pool: torch.Tensor, minmax_pool: torch.Tensor, block_ids: torch.Tensor,
                  *, impl: Impl | None = None) -> None:
    """minmax_pool[b] = (min, max) over the 16 keys of block b, for each full block b in block_ids."""
    fn = _minmax.update_minmax if resolve_impl(impl, kv_pool) == "triton" else _minmax.update_minmax_ref
    fn(kv_pool, minmax_pool, block_ids)


def score_pages(q: torch.Tensor, minmax_pool: torch.Tensor, block_tables: torch.Tensor,
                seq_lens: torch.Tensor, *, impl: Impl | None = None) -> torch.Tensor:
    """Quest upper bound per page, fp32 [num_seqs, num_kv_heads, max_pages]."""
    fn = _score.score_pages if resolve_impl(impl, q) == "triton" else _score.score_pages_ref
    return fn(q, minmax_pool, block_tables, seq_lens)


def select_topk(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Top-k logical pages per head, ascending, padded with -1: int32 [num_seqs, num_kv_heads, k]."""
    return _topk.select_topk(scores, k)


def paged_decode_attention(q: torch.Tensor, kv_pool: torch.Tensor, block_tables: torch.Tensor,
                           seq_lens: torch.Tensor, *, scale: float | None = None,
                           window: int | torch.Tensor | None = None, num_sinks: int = 0,
                           num_splits: int | None = None, impl: Impl | None = None) -> torch.Tensor:
    """Decode attention of q [num_seqs, num_heads, D] over every page of each head's block table."""
    if resolve_impl(impl, q) == "triton":
        return _dense.paged_decode_attention(q, kv_pool, block_tables, seq_lens, scale=scale,
                                             window=window, num_sinks=num_sinks, num_splits=num_splits)
    return _dense.paged_decode_attention_ref(q, kv_pool, block_tables, seq_lens, scale=scale,
                                             window=window, num_sinks=num_sinks)


def sparse_paged_decode_attention(q: torch.Tensor, kv_pool: torch.Tensor, block_tables: torch.Tensor,
                                  seq_lens: torch.Tensor, pages: torch.Tensor, *,
                                  scale: float | None = None, num_splits: int | None = None,
                                  impl: Impl | None = None) -> torch.Tensor:
    """Decode attention over the listed logical pages [num_seqs, num_kv_heads, K] (-1 padded)."""
    if resolve_impl(impl, q) == "triton":
        return _sparse.sparse_paged_decode_attention(q, kv_pool, block_tables, seq_lens, pages,
                                                     scale=scale, num_splits=num_splits)
    return _sparse.sparse_paged_decode_attention_ref(q, kv_pool, block_tables, seq_lens, pages, scale=scale)


def copy_blocks(src_pool: torch.Tensor, dst_pool: torch.Tensor, src_ids: torch.Tensor,
                dst_ids: torch.Tensor, *, stream: torch.cuda.Stream | None = None,
                impl: Impl | None = None) -> None:
    """dst_pool[:, dst_ids[i]] = src_pool[:, src_ids[i]]; pools may be device, pinned host or the same."""
    if resolve_impl(impl, src_pool, dst_pool) == "triton":
        _copy.copy_blocks(src_pool, dst_pool, src_ids, dst_ids, stream=stream)
    else:
        _copy.copy_blocks_ref(src_pool, dst_pool, src_ids, dst_ids)
