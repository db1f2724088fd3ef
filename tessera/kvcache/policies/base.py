"""The KV-cache policy seam: a policy is a HeadPlan for one model plus a factory of per-request states.

Backends hold one RequestKV per request and drive it (see tessera/kvcache/request_kv.py).
"""
from __future__ import annotations

from typing import Protocol

import numpy as np

from tessera.kvcache.geometry import PageGeometry
from tessera.kvcache.head_plan import HeadMode, HeadPlan
from tessera.kvcache.request_kv import RequestKV
from tessera.kvcache.topk import TopKSource
from tessera.types import ModelSpec


class KVCachePolicy(Protocol):
    name: str
    plan: HeadPlan

    def new_request(self, request_id: int, prompt_tokens: int, topk_source: TopKSource | None = None,
                    track_pages: bool = True) -> RequestKV: ...


class PlannedPolicy:
    """Shared by the six policies: they differ only in the HeadPlan they build."""

    name = "planned"

    def __init__(self, plan: HeadPlan) -> None:
        self.plan = plan

    def new_request(self, request_id: int, prompt_tokens: int, topk_source: TopKSource | None = None,
                    track_pages: bool = True) -> RequestKV:
        return RequestKV(self.plan, request_id, prompt_tokens, topk_source, track_pages)

    def __repr__(self) -> str:
        counts = ", ".join(f"{m.name.lower()}={self.plan.count(m)}" for m in HeadMode if self.plan.count(m))
        return f"{type(self).__name__}({self.plan.geometry.num_layers}x{self.plan.geometry.num_kv_heads} heads: {counts})"


def uniform_plan(policy: str, model: ModelSpec, page_tokens: int, mode: HeadMode, **fields) -> HeadPlan:
    """A plan with every head in one mode."""
    geometry = PageGeometry.of(model, page_tokens)
    shape = (geometry.num_layers, geometry.num_kv_heads)
    return HeadPlan(policy=policy, geometry=geometry, mode=np.full(shape, int(mode), dtype=np.int8),
                    rerank_interval=np.zeros(shape, dtype=np.int32), **fields)


def pages_for(tokens: int, page_tokens: int) -> int:
    return -(-tokens // page_tokens)
