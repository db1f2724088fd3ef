"""The paged-KV memory layout every kernel in this package shares, and the index helpers around it.

Checks of shapes and dtypes (one clear message each) live here too, so every wrapper says the same thing.

Layout (FlexiCache's per-head paging):
- A *block* holds PAGE_SIZE = 16 consecutive tokens of ONE (layer, KV head) of one request.
- KV pool: ``kv_pool[2, num_blocks, 16, head_dim]``; ``kv_pool[0]`` are keys, ``kv_pool[1]`` values.
  One pool per layer, or one flat pool shared by all layers (block ids are then global); the
  kernels only see the 4-d tensor and require it contiguous.
- Block tables: int32 ``[num_seqs, num_kv_heads, max_pages]``, one row per (request, KV head) of
  one layer; entry p is the block holding tokens [16p, 16p + 16) of that head, or -1 for "no page"
  (never allocated, or not resident in this pool).
- Slot of a token: ``block_id * 16 + offset_in_page``; slot mappings are per KV head.
- MinMax pool: ``minmax_pool[num_blocks, 2, head_dim]``, same dtype as the KV pool (min and max are
  exact in it), indexed by the same block id as the page it summarises: [b, 0] = element-wise min
  of the 16 keys, [b, 1] = max. Block-major so one page's metadata is one contiguous 2*D run.
- Query heads of KV head h are h*G ... h*G + G - 1 (G = num_heads // num_kv_heads), as in
  ``repeat_interleave``.
- Page lists for sparse attention: int32 ``[num_seqs, num_kv_heads, K]`` of *logical* page indices
  (columns of the block table), padded with SENTINEL (-1).
- seq_lens: int32 ``[num_seqs]``, tokens whose KV is in the pool, the current token included.

Every kernel treats a block id outside [0, num_blocks) and a page index outside [0, max_pages)
exactly like -1 (skipped), so a bad table never makes a kernel read or write out of bounds.
"""
from __future__ import annotations

import torch

PAGE_SIZE = 16
SENTINEL = -1
FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
INDEX_DTYPES = (torch.int32, torch.int64)


def slot_mapping(block_tables: torch.Tensor, seq_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Per-head slots [T, num_kv_heads] of tokens (seq_ids[t], positions[t]); -1 where no page."""
    pages = block_tables[seq_ids.long(), :, positions.long() // PAGE_SIZE]  # [T, H]
    slots = pages.long() * PAGE_SIZE + (positions.long() % PAGE_SIZE)[:, None]
    return torch.where(pages >= 0, slots, SENTINEL).to(torch.int64)


def newly_full_blocks(block_tables: torch.Tensor, old_lens: torch.Tensor, new_lens: torch.Tensor) -> torch.Tensor:
    """Block ids (flat, -1 padded) of the pages that became full when seq lens went old -> new.

    Covers a decode step (at most one page per head) and a prefill chunk (many), for update_minmax.
    """
    old_full = old_lens.long() // PAGE_SIZE
    new_full = new_lens.long() // PAGE_SIZE
    pages = torch.arange(block_tables.shape[-1], device=block_tables.device)
    became_full = (pages >= old_full[:, None]) & (pages < new_full[:, None])  # [B, P]
    ids = torch.where(became_full[:, None, :], block_tables.long(), SENTINEL)
    return ids[ids >= 0]


# ------------------------------------------------------------------------------------------- checks
def check(cond: bool, message: str) -> None:
    if not cond:
        raise ValueError(message)


def check_kv_pool(kv_pool: torch.Tensor, name: str = "kv_pool") -> tuple[int, int]:
    """Returns (num_blocks, head_dim)."""
    check(kv_pool.dim() == 4 and kv_pool.shape[0] == 2 and kv_pool.shape[2] == PAGE_SIZE,
          f"{name} must be [2, num_blocks, {PAGE_SIZE}, head_dim], got {list(kv_pool.shape)}")
    check(kv_pool.dtype in FLOAT_DTYPES, f"{name} dtype must be one of {FLOAT_DTYPES}, got {kv_pool.dtype}")
    check(kv_pool.is_contiguous(), f"{name} must be contiguous")
    head_dim = kv_pool.shape[3]
    check(head_dim >= 16 and head_dim & (head_dim - 1) == 0,
          f"head_dim must be a power of two >= 16 (64 and 128 are tested), got {head_dim}")
    return kv_pool.shape[1], head_dim


def check_index(t: torch.Tensor, name: str, dim: int, device: torch.device) -> None:
    check(t.dtype in INDEX_DTYPES, f"{name} must be int32 or int64, got {t.dtype}")
    check(t.dim() == dim, f"{name} must have {dim} dims, got shape {list(t.shape)}")
    check(t.device == device, f"{name} is on {t.device}, expected {device}")


def check_decode_inputs(q: torch.Tensor, kv_pool: torch.Tensor, block_tables: torch.Tensor,
                        seq_lens: torch.Tensor) -> tuple[int, int]:
    """Checks the arguments shared by the decode-time attention ops; returns (num_kv_heads, group)."""
    _, head_dim = check_kv_pool(kv_pool)
    return check_query(q, kv_pool.dtype, head_dim, block_tables, seq_lens)


def check_query(q: torch.Tensor, dtype: torch.dtype, head_dim: int, block_tables: torch.Tensor,
                seq_lens: torch.Tensor) -> tuple[int, int]:
    """q [num_seqs, num_heads, head_dim] against the tables; returns (num_kv_heads, group)."""
    check(q.dim() == 3, f"q must be [num_seqs, num_heads, head_dim], got {list(q.shape)}")
    check(q.shape[2] == head_dim, f"q head_dim {q.shape[2]} != pool head_dim {head_dim}")
    check(dtype in FLOAT_DTYPES, f"pool dtype must be one of {FLOAT_DTYPES}, got {dtype}")
    check(q.dtype == dtype, f"q dtype {q.dtype} != pool dtype {dtype}")
    check(q.stride(2) == 1, "q must be contiguous in its last dim")
    check_index(block_tables, "block_tables", 3, q.device)
    check_index(seq_lens, "seq_lens", 1, q.device)
    check(block_tables.stride(2) == 1, "block_tables must be contiguous in its last dim")
    num_seqs, num_kv_heads = block_tables.shape[:2]
    check(q.shape[0] == num_seqs == seq_lens.shape[0],
          f"num_seqs disagree: q {q.shape[0]}, block_tables {num_seqs}, seq_lens {seq_lens.shape[0]}")
    check(num_kv_heads > 0 and q.shape[1] % num_kv_heads == 0,
          f"num_heads {q.shape[1]} must be a multiple of num_kv_heads {num_kv_heads}")
    return num_kv_heads, q.shape[1] // num_kv_heads
