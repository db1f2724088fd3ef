"""Cost models: how long an engine iteration and a transfer take (the CostModel Protocol).

RooflineCostModel works for any (model, GPU); ProfiledCostModel interpolates measured per-layer
profiles (Vidur's, or the runtime's own) and uses the roofline for attention; a Calibration is a
machine fitted from the runtime's step times (tessera/cost/calibration.py).
"""
from tessera.cost.calibration import Calibration, fit_calibration
from tessera.cost.factory import KINDS, make_cost_model
from tessera.cost.network import AllReduceTable, ring_all_reduce_time, transfer_time
from tessera.cost.profile import LAYER_OPS, LayerProfile
from tessera.cost.profiled import VIDUR_PROFILES, ProfiledCostModel, vidur_profile_path
from tessera.cost.roofline import RooflineCostModel, RooflineEfficiency

__all__ = [
    "Calibration", "KINDS", "LAYER_OPS", "VIDUR_PROFILES", "AllReduceTable", "LayerProfile", "ProfiledCostModel",
    "RooflineCostModel", "RooflineEfficiency", "make_cost_model", "ring_all_reduce_time",
    "transfer_time", "vidur_profile_path", "fit_calibration",
]
