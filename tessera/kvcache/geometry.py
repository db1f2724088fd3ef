"""Page geometry of one model: pages per (layer, KV head), their bytes and the MinMax metadata bytes.

A page holds `page_tokens` tokens of ONE (layer, KV head) (FlexiCache's layout, flexicache.md §2.1).
"""
from __future__ import annotations

from dataclasses import dataclass

from tessera.types import ModelSpec


@dataclass(frozen=True, slots=True)
class PageGeometry:
    num_layers: int
    num_kv_heads: int
    gqa_group: int
    head_dim: int
    page_tokens: int
    page_bytes: int  # K and V of one page of one (layer, KV head)
    minmax_bytes_per_page: int  # min and max key vectors of one page of one head

    @classmethod
    def of(cls, model: ModelSpec, page_tokens: int) -> "PageGeometry":
        return cls(num_layers=model.num_layers, num_kv_heads=model.num_kv_heads, gqa_group=model.gqa_group,
                   head_dim=model.head_dim, page_tokens=page_tokens,
                   page_bytes=page_tokens * model.kv_bytes_per_token_per_head,
                   minmax_bytes_per_page=2 * model.head_dim * model.dtype_bytes)

    @property
    def num_heads_total(self) -> int:
        """(layer, KV head) pairs."""
        return self.num_layers * self.num_kv_heads

    def num_pages(self, num_tokens: int) -> int:
        return -(-num_tokens // self.page_tokens)
