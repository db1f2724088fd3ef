"""Baseline placers MOSAIC is compared against, named as in results: sequential, static,
least_loaded, lpt."""
from tessera.placement.baselines.least_loaded import LeastLoadedPlacer
from tessera.placement.baselines.lpt import LptPlacer, lpt_assignment
from tessera.placement.baselines.sequential import SequentialPlacer
from tessera.placement.baselines.static import StaticPlacer

__all__ = ["LeastLoadedPlacer", "LptPlacer", "SequentialPlacer", "StaticPlacer", "lpt_assignment"]
