"""make_cost_model: build a CostModel by kind name from a model, a GPU and a TP degree.

Keyword params: the RooflineEfficiency fields (flops_fraction, hbm_fraction, overhead_s,
seq_overhead_s) or an `efficiency` object, `use_nccl_tables`, and for kind="profiled" an optional `profile` table.
"""
from __future__ import annotations

from dataclasses import fields

from tessera.cost.profiled import ProfiledCostModel
from tessera.cost.roofline import RooflineCostModel, RooflineEfficiency
from tessera.hardware import gpu as gpu_by_name
from tessera.interface import CostModel
from tessera.models import model as model_by_name
from tessera.types import GPUSpec, ModelSpec

KINDS = {"roofline": RooflineCostModel, "profiled": ProfiledCostModel}
_EFFICIENCY_FIELDS = {f.name for f in fields(RooflineEfficiency)}
_EXTRA_PARAMS = {"roofline": {"use_nccl_tables"}, "profiled": {"use_nccl_tables", "profile"}}


def make_cost_model(kind: str, model: ModelSpec | str, gpu: GPUSpec | str, tp: int = 1,
                    **params) -> CostModel:
    """A CostModel of `kind` ("roofline" | "profiled"); model and gpu may be catalog names."""
    if kind not in KINDS:
        raise ValueError(f"unknown cost model kind {kind!r}; choose one of {sorted(KINDS)}")
    allowed = _EFFICIENCY_FIELDS | _EXTRA_PARAMS[kind] | {"efficiency"}
    unknown = set(params) - allowed
    if unknown:
        raise TypeError(f"make_cost_model({kind!r}) got unknown params {sorted(unknown)}; "
                        f"allowed: {sorted(allowed)}")
    eff_params = {k: params.pop(k) for k in list(params) if k in _EFFICIENCY_FIELDS}
    if eff_params and "efficiency" in params:
        raise TypeError("pass either efficiency=RooflineEfficiency(...) or its fields, not both")
    efficiency = params.pop("efficiency", None) or RooflineEfficiency(**eff_params)
    if isinstance(model, str):
        model = model_by_name(model)
    if isinstance(gpu, str):
        gpu = gpu_by_name(gpu)
    return KINDS[kind](model, gpu, tp, efficiency=efficiency, **params)
