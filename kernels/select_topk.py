"""select_topk: the K best-scoring pages of each (seq, KV head), as a padded list of page indices.

Plain torch on every device (torch.topk is already a good GPU kernel). Pages come out in ascending
order (sequential reads downstream), padded with SENTINEL where fewer than K pages are valid.
"""
from __future__ import annotations

import torch

from tessera.kernels.layout import SENTINEL, check


def select_topk(scores: torch.Tensor, k: int) -> torch.Tensor:
    """scores fp32 [S, H, P] (-inf = invalid) -> int32 [S, H, k] logical pages, ascending, -1 padded."""
    check(scores.dim() == 3, f"scores must be [num_seqs, num_kv_heads, max_pages], got {list(scores.shape)}")
    check(k >= 0, f"k must be >= 0, got {k}")
    num_pages = scores.shape[2]
    take = min(k, num_pages)
    values, pages = torch.topk(scores, take, dim=-1, sorted=False)
    # Sort with the invalid ones pushed past every real page, then mark them.
    pages = torch.where(values == float("-inf"), num_pages, pages)
    pages = torch.sort(pages, dim=-1).values
    pages = torch.where(pages == num_pages, SENTINEL, pages).to(torch.int32)
    if take < k:
        pad = pages.new_full((*pages.shape[:2], k - take), SENTINEL)
        pages = torch.cat((pages, pad), dim=-1)
    return pages
