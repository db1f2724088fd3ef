"""Attention over the paged KV cache, per layer: prefill chunks (dense, causal) and decode (dense or sparse per head).

Decode, per layer, for the batch's decoding sequences: heads in FULL mode read every page of their block
table with ``paged_decode_attention``; every other head reads an explicit page list with
``sparse_paged_decode_attention`` (WINDOW: sinks + window; OFFLOAD: its resident top-K + tail, or at a
first rank the new top-K; RESIDENT_TOPK: this step's top-K from ``score_pages`` + ``select_topk``).
When a layer has both kinds, both kernels run over the whole batch and each query head takes its
mode's output (simple, and both calls are batched; the wasted work is the other kind's heads).

Prefill runs the model's reference ``causal_attention`` on the chunk's queries against the chunk's own
K/V (first chunk) or against every earlier page of the sequence gathered from the pool (later chunks);
during prefill every head holds every page, so the gather is complete. Device-agnostic torch.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from tessera.kernels import dispatch
from tessera.kernels.layout import PAGE_SIZE
from tessera.runtime.model import causal_attention


def gather_pages(pool: torch.Tensor, blocks: torch.Tensor, num_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """K and V [1, H, num_tokens, D] of one sequence from its device blocks [H, pages] (all >= 0)."""
    H, P = blocks.shape
    D = pool.shape[-1]
    flat = blocks.reshape(-1).long()
    k = pool[0].index_select(0, flat).view(H, P * PAGE_SIZE, D)[:, :num_tokens]
    v = pool[1].index_select(0, flat).view(H, P * PAGE_SIZE, D)[:, :num_tokens]
    return k.unsqueeze(0), v.unsqueeze(0)


def prefill_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pool: torch.Tensor,
                      blocks: torch.Tensor | None, start: int, window: int | None = None) -> torch.Tensor:
    """q (1, Hq, T, D) of tokens [start, start + T); k, v (1, Hkv, T, D) the chunk's own keys/values.

    blocks: the sequence's device blocks [Hkv, pages] of this layer (needed when start > 0).
    window: the layer's sliding window (None: full causal attention).
    """
    if start == 0:
        return causal_attention(q, k, v, window)
    k_all, v_all = gather_pages(pool, blocks, start + q.shape[2])
    return causal_attention(q, k_all, v_all, window)


@dataclass
class DecodeLayerPlan:
    """What decode attention of one layer needs besides q: which kernels run and the sparse page lists."""

    full_heads: torch.Tensor  # bool [Hkv]: FULL heads of this layer (on the pool's device)
    pages: torch.Tensor | None  # int32 [B, Hkv, W] static page lists (-1 pad), None if no sparse head
    dynamic: torch.Tensor | None  # bool [B, Hkv]: rows whose pages are this step's top-K
    needs_scores: bool
    # Host-side copies of full_heads.any() / .all(). Reading them from the device tensor is a
    # device->host sync per layer and step on CUDA, so callers that know them (the engine, from its
    # numpy head modes) pass them; None falls back to reading the tensor.
    any_full: bool | None = None
    all_full: bool | None = None
    full_q: torch.Tensor | None = None  # bool [Hq]: full_heads per query head (repeat_interleave), optional
    window: int | None = None  # the model's sliding window on this layer (then every head is FULL)


def decode_attention(q: torch.Tensor, pool: torch.Tensor, block_tables: torch.Tensor, seq_lens: torch.Tensor,
                     plan: DecodeLayerPlan, topk: torch.Tensor | None) -> torch.Tensor:
    """q [B, Hq, D] -> o [B, Hq, D]; topk [B, Hkv, K] this step's top-K pages (when plan.dynamic has rows)."""
    num_kv_heads = block_tables.shape[1]
    group = q.shape[1] // num_kv_heads
    any_full = bool(plan.full_heads.any()) if plan.any_full is None else plan.any_full
    all_full = bool(plan.full_heads.all()) if plan.all_full is None else plan.all_full
    o_full = dispatch.paged_decode_attention(q, pool, block_tables, seq_lens, window=plan.window) \
        if any_full else None
    if all_full:
        return o_full
    pages = plan.pages
    if topk is not None and plan.dynamic is not None:
        width = max(pages.shape[2], topk.shape[2])
        pages = _pad(pages, width)
        pages = torch.where(plan.dynamic[..., None], _pad(topk, width), pages)
    o_sparse = dispatch.sparse_paged_decode_attention(q, pool, block_tables, seq_lens, pages.contiguous())
    if not any_full:
        return o_sparse
    full_q = plan.full_q if plan.full_q is not None else plan.full_heads.repeat_interleave(group)
    full_q = full_q[None, :, None]
    return torch.where(full_q, o_full, o_sparse)


def _pad(pages: torch.Tensor, width: int) -> torch.Tensor:
    if pages.shape[2] == width:
        return pages
    pad = pages.new_full((*pages.shape[:2], width - pages.shape[2]), -1)
    return torch.cat((pages, pad), dim=2)
