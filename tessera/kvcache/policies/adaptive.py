"""Our FlexiCache variant: a rerank interval per head from its profiled stability (a spectrum, not two classes).

Staleness of interval R for per-step keep probability p: the mean, over the R steps a set is used,
of the fraction of the head's true top-K missing from it = 1 - mean_{d<R} p**d (head model).
"""
from __future__ import annotations

import numpy as np

from tessera.kvcache.config import AdaptiveConfig
from tessera.kvcache.geometry import PageGeometry
from tessera.kvcache.head_plan import HeadMode, HeadPlan
from tessera.kvcache.policies.base import PlannedPolicy
from tessera.kvcache.stability import keep_prob_of_ts
from tessera.types import ModelSpec


def staleness(keep_prob: np.ndarray, interval: int) -> np.ndarray:
    d = np.arange(interval)
    return 1.0 - np.mean(np.asarray(keep_prob)[..., None] ** d, axis=-1)


def intervals_for(keep_prob: np.ndarray, intervals: tuple[int, ...], max_staleness: float) -> np.ndarray:
    """Largest allowed interval per head whose staleness is <= max_staleness (1 if none is)."""
    best = np.ones(keep_prob.shape, dtype=np.int32)
    for r in intervals:
        best = np.where(staleness(keep_prob, r) <= max_staleness, r, best)
    return best


def synthetic_stability(model: ModelSpec) -> np.ndarray:
    """TS per head predicted by the default head model (shipped unstable class where the paper has one)."""
    from tessera.kvcache.head_lists import shipped_unstable_heads
    from tessera.kvcache.head_model import HeadModel, default_params, model_seed
    from tessera.kvcache.stability import ts_of_keep_prob

    try:
        unstable = shipped_unstable_heads(model.name)
    except KeyError:
        unstable = None
    hm = HeadModel(default_params(), model.num_layers, model.num_kv_heads, unstable, seed=model_seed(model.name))
    return ts_of_keep_prob(hm.typical_keep_prob())


class FlexiCacheAdaptivePolicy(PlannedPolicy):
    name = "flexicache_adaptive"

    def __init__(self, model: ModelSpec, config: AdaptiveConfig = AdaptiveConfig(),
                 head_stability: np.ndarray | None = None) -> None:
        """head_stability: mean TS per (layer, kv_head) from profiling (StabilityProfile.mean_ts);
        None uses the default head model's prediction."""
        self.config = config
        geometry = PageGeometry.of(model, config.page_tokens)
        ts = synthetic_stability(model) if head_stability is None else np.asarray(head_stability)
        if ts.shape != (geometry.num_layers, geometry.num_kv_heads):
            raise ValueError(f"flexicache_adaptive: head_stability has shape {ts.shape}, expected "
                             f"({geometry.num_layers}, {geometry.num_kv_heads})")
        interval = intervals_for(keep_prob_of_ts(ts), config.intervals, config.max_staleness)
        resident = interval < config.min_offload_interval
        super().__init__(HeadPlan(
            policy=self.name, geometry=geometry,
            mode=np.where(resident, int(HeadMode.RESIDENT_TOPK), int(HeadMode.OFFLOAD)).astype(np.int8),
            rerank_interval=np.where(resident, 0, interval).astype(np.int32),
            topk_pages=config.topk_pages, keeps_minmax=True,
            note="intervals from " + ("the default head model" if head_stability is None else "a profile")))
