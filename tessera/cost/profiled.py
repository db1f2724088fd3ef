"""Profiled cost model: linear-layer time interpolated from measured per-layer operator profiles.

The non-attention ops of a layer (norms, QKV/O projections, RoPE, MLP, residual add) come from a
LayerProfile: Vidur's shipped mlp.csv for the profiled (model, GPU) pairs, or a table measured by
Tessera's runtime. ATTENTION IS NOT PROFILED: Vidur's attention.csv tables are too large to ship, so
prefill/decode attention, the LM head, extra HBM traffic and the per-iteration overhead come from the
roofline model. TP all-reduces use Vidur's NCCL tables where they apply, else the link formula.
"""
from __future__ import annotations

from os import PathLike

import pandas as pd

from tessera.cost.profile import LayerProfile
from tessera.cost.roofline import RooflineCostModel, RooflineEfficiency
from tessera.interface import BatchShape
from tessera.models import MODELS
from tessera.paths import data_path
from tessera.types import GPUSpec, LinkSpec, ModelSpec

# (model, GPU) -> folder under data/vidur-profiling/compute holding mlp.csv.
VIDUR_PROFILES = {
    ("Llama-2-7B", "H100-SXM-80GB"): "h100/meta-llama/Llama-2-7b-hf",
    ("Llama-2-70B", "H100-SXM-80GB"): "h100/meta-llama/Llama-2-70b-hf",
    ("Llama-3-8B", "A100-SXM-80GB"): "a100/meta-llama/Meta-Llama-3-8B",
    ("Llama-3-70B", "A100-SXM-80GB"): "a100/meta-llama/Meta-Llama-3-70B",
}
# A MoE layer (num_experts) is not a dense one of the same widths: Mixtral's match Llama-3-8B's otherwise.
_LAYER_SHAPE = ("hidden_size", "num_heads", "num_kv_heads", "head_dim", "intermediate_size",
                "gated_mlp", "dtype_bytes", "num_experts", "experts_per_token", "position_encoding")


def vidur_profile_path(model: ModelSpec, gpu: GPUSpec):
    """mlp.csv for this (model, GPU): an exact entry, else a profiled model with the same layer shape.

    The layer shape match lets Meta-Llama-3-8B's A100 profile serve Llama-3.1-8B, the R1-Distill
    Llama and other fine-tunes: the per-layer ops are identical.
    """
    folder = VIDUR_PROFILES.get((model.name, gpu.name))
    if folder is None:
        shape = tuple(getattr(model, f) for f in _LAYER_SHAPE)
        for (name, gpu_name), candidate in VIDUR_PROFILES.items():
            if gpu_name == gpu.name and tuple(getattr(MODELS[name], f) for f in _LAYER_SHAPE) == shape:
                folder = candidate
                break
    if folder is None:
        combos = ", ".join(f"{m} on {g}" for m, g in VIDUR_PROFILES)
        raise KeyError(f"no Vidur profile for {model.name} on {gpu.name}; profiled: {combos} (and "
                       f"models with the same layer shape on those GPUs). Use kind='roofline' or "
                       f"pass a profile table measured on your machine.")
    return data_path("vidur-profiling", "compute", *folder.split("/"), "mlp.csv")


class ProfiledCostModel:
    """CostModel: profiled linear layers + roofline attention/LM head; precomputed in __init__."""

    def __init__(self, model: ModelSpec, gpu: GPUSpec, tp: int = 1,
                 profile: LayerProfile | pd.DataFrame | str | PathLike | None = None,
                 efficiency: RooflineEfficiency | None = None, use_nccl_tables: bool = True):
        self._roofline = RooflineCostModel(model, gpu, tp, efficiency, use_nccl_tables)
        self.model, self.gpu, self.tp = model, gpu, tp
        self.efficiency = self._roofline.efficiency
        if profile is None:
            profile = vidur_profile_path(model, gpu)
        if not isinstance(profile, LayerProfile):
            profile = LayerProfile.from_table(profile, tp=tp, model=model)
        self.profile = profile
        self._layer_s = profile.interpolator()
        self._num_layers = model.num_layers
        self._layers_cache: dict[int, float] = {}
        self._rest_time = self._roofline._rest_time

    def layers_time(self, num_tokens: int) -> float:
        """Profiled non-attention ops of all layers plus TP all-reduces, for num_tokens tokens."""
        t = self._layers_cache.get(num_tokens)
        if t is None:
            t = self._num_layers * self._layer_s(num_tokens) + self._roofline.all_reduce_time(num_tokens)
            if len(self._layers_cache) < 1 << 16:
                self._layers_cache[num_tokens] = t
        return t

    def iteration_time(self, batch: BatchShape) -> float:
        pf = batch.prefill_tokens
        ds = batch.decode_seqs
        n = pf + ds
        if n <= 0:
            return self._roofline.iteration_time(batch)  # empty batch (or invalid: raises there)
        t = self._layers_cache.get(n)
        if t is None:
            t = self.layers_time(n)
        return t + self._rest_time(pf, batch.prefill_attn_pairs, ds, batch.decode_kv_tokens,
                                   batch.extra_hbm_bytes, batch.num_seqs)

    def decode_step_terms(self, ds: int) -> tuple[float, float, float, float, float, float]:
        """RooflineCostModel.decode_step_terms with the profiled layers (and all-reduces) as the head."""
        return (self.layers_time(ds),) + self._roofline._rest_terms(ds)

    def transfer_time(self, num_bytes: float, link: LinkSpec) -> float:
        return self._roofline.transfer_time(num_bytes, link)
