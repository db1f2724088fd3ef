"""DuoAttention-like static split: retrieval heads keep full KV; streaming heads keep sink + recent window.

Retrieval heads = the `retrieval_fraction` of heads with the highest DuoAttention gate value.
"""
from __future__ import annotations

import numpy as np

from tessera.kvcache.config import HeadSplitConfig
from tessera.kvcache.geometry import PageGeometry
from tessera.kvcache.head_lists import duo_gate_values, top_fraction
from tessera.kvcache.head_plan import HeadMode, HeadPlan
from tessera.kvcache.policies.base import PlannedPolicy, pages_for
from tessera.types import ModelSpec


class HeadSplitPolicy(PlannedPolicy):
    name = "head_split"

    def __init__(self, model: ModelSpec, config: HeadSplitConfig = HeadSplitConfig(),
                 gate_values: np.ndarray | None = None) -> None:
        self.config = config
        geometry = PageGeometry.of(model, config.page_tokens)
        shape = (geometry.num_layers, geometry.num_kv_heads)
        gates = duo_gate_values(model.name, config.pattern_model) if gate_values is None else gate_values
        if gates.shape != shape:
            raise ValueError(f"head_split: DuoAttention pattern has shape {gates.shape}, {model.name} has "
                             f"{shape[0]} layers x {shape[1]} KV heads; set pattern_model to a matching folder")
        retrieval = top_fraction(gates, config.retrieval_fraction)
        p = config.page_tokens
        super().__init__(HeadPlan(
            policy=self.name, geometry=geometry,
            mode=np.where(retrieval, int(HeadMode.FULL), int(HeadMode.WINDOW)).astype(np.int8),
            rerank_interval=np.zeros(shape, dtype=np.int32),
            sink_pages=pages_for(config.sink_tokens, p), window_pages=pages_for(config.window_tokens, p),
            note=f"retrieval heads: top {config.retrieval_fraction:.0%} DuoAttention gates"))
