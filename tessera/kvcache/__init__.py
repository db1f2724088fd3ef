"""Per-head paged KV-cache policies (full, Quest, StreamingLLM, head split, FlexiCache, adaptive FlexiCache)
and the per-request page state both backends drive; numpy only, no simulator or torch."""
from __future__ import annotations

from tessera.kvcache.head_plan import HeadMode, HeadPlan
from tessera.kvcache.policies import POLICIES, KVCachePolicy, make_policy
from tessera.kvcache.request_kv import RequestKV
from tessera.kvcache.summary import PageMoves, StepSummary
from tessera.kvcache.topk import ScoresTopK, TopKSource, minmax_page_scores, topk_from_scores
from tessera.kvcache.traces import TopKTrace, TraceTopK

__all__ = ["HeadMode", "HeadPlan", "POLICIES", "KVCachePolicy", "make_policy", "RequestKV", "PageMoves",
           "StepSummary", "ScoresTopK", "TopKSource", "minmax_page_scores", "topk_from_scores", "TopKTrace",
           "TraceTopK"]
