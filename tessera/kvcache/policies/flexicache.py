"""FlexiCache: unstable heads Quest-like (all on device, top-K every step); stable heads keep top-K + tail
on device, every full page on host, and are reranked every R steps (flexicache.md §2)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from tessera.kvcache.config import FlexiCacheConfig
from tessera.kvcache.geometry import PageGeometry
from tessera.kvcache.head_lists import heads_mask, shipped_unstable_heads, unstable_list_source
from tessera.kvcache.head_plan import HeadMode, HeadPlan
from tessera.kvcache.policies.base import PlannedPolicy
from tessera.types import ModelSpec


def unstable_mask(model: ModelSpec, config: FlexiCacheConfig) -> tuple[np.ndarray, str]:
    """Bool [layers, kv_heads] of unstable heads, and where they came from."""
    shape = (model.num_layers, model.num_kv_heads)
    if config.unstable_heads is not None:
        return heads_mask(config.unstable_heads, shape), "given"
    if config.unstable_source == "shipped":
        heads = shipped_unstable_heads(model.name)
        if abs(len(heads) - config.unstable_fraction * shape[0] * shape[1]) >= 1:
            raise ValueError(f"flexicache: the shipped list of {model.name} has {len(heads)} unstable heads, "
                             f"unstable_fraction={config.unstable_fraction} asks for another count; use "
                             "unstable_source='synthetic' or pass unstable_heads")
        return heads_mask(heads, shape), unstable_list_source(model.name)
    from tessera.kvcache.head_model import HeadModel, default_params, model_seed

    params = replace(default_params(), unstable_fraction=config.unstable_fraction)
    synthetic = HeadModel(params, *shape, seed=model_seed(model.name))
    return synthetic.unstable, "synthetic (head model's unstable class)"


class FlexiCachePolicy(PlannedPolicy):
    name = "flexicache"

    def __init__(self, model: ModelSpec, config: FlexiCacheConfig = FlexiCacheConfig()) -> None:
        self.config = config
        geometry = PageGeometry.of(model, config.page_tokens)
        unstable, source = unstable_mask(model, config)
        super().__init__(HeadPlan(
            policy=self.name, geometry=geometry,
            mode=np.where(unstable, int(HeadMode.RESIDENT_TOPK), int(HeadMode.OFFLOAD)).astype(np.int8),
            rerank_interval=np.where(unstable, 0, config.rerank_interval).astype(np.int32),
            topk_pages=config.topk_pages, keeps_minmax=True, note=f"unstable heads: {source}"))
