"""MOSAIC placement: profiled costs, the ILP (Pyomo + HiGHS) and the baselines, all Placers.

make_placer(name, **params): mosaic | sequential | static | least_loaded | lpt.
"""
from dataclasses import fields

from tessera.placement.baselines import LeastLoadedPlacer, LptPlacer, SequentialPlacer, StaticPlacer
from tessera.placement.costs import (CostConfig, ExpertProfile, build_placement_problem,
                                     profile_expert, prompt_cost_s)
from tessera.placement.mosaic import MosaicConfig, MosaicPlacer, PlacementInfeasible
from tessera.placement.plan import PlacementPlan, check_plan
from tessera.placement.problem import MoAPlacementProblem, PlacementInputError, check_problem

PLACERS = {"mosaic": MosaicPlacer, "sequential": SequentialPlacer, "static": StaticPlacer,
           "least_loaded": LeastLoadedPlacer, "lpt": LptPlacer}


def make_placer(name: str, **params):
    """A Placer by result name; `mosaic` takes MosaicConfig fields as keyword params."""
    if name not in PLACERS:
        raise PlacementInputError(f"placement.name={name!r} is unknown; use one of {', '.join(PLACERS)}")
    if name == "mosaic":
        try:
            return MosaicPlacer(MosaicConfig(**params))
        except TypeError as error:  # an unknown keyword
            allowed = ", ".join(f.name for f in fields(MosaicConfig))
            raise PlacementInputError(f"placement: {error}; allowed keys: {allowed}") from None
    if params:
        raise PlacementInputError(f"placement {name!r} takes no parameters (got {sorted(params)})")
    return PLACERS[name]()


__all__ = ["CostConfig", "ExpertProfile", "LeastLoadedPlacer", "LptPlacer", "MoAPlacementProblem",
           "MosaicConfig", "MosaicPlacer", "PLACERS", "PlacementInfeasible", "PlacementInputError",
           "PlacementPlan", "SequentialPlacer", "StaticPlacer", "build_placement_problem", "check_plan",
           "check_problem", "make_placer", "profile_expert", "prompt_cost_s"]
