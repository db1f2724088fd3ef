"""make_aggregator: an Aggregator by policy name (always | unanimous | majority | weighted).

Bad names or keys raise ValueError naming the allowed ones.
"""
from __future__ import annotations

from typing import Any

from tessera.aggregation.always import AlwaysAggregate
from tessera.aggregation.threshold import ThresholdAggregator, WeightedAggregator, majority, unanimous
from tessera.interface import Aggregator

POLICIES = ("always", "unanimous", "majority", "weighted")


def make_aggregator(name: str, **params: Any) -> Aggregator:
    """e.g. make_aggregator("majority", threshold=0.67) or ("weighted", weights={...})."""
    builders = {"always": AlwaysAggregate, "unanimous": unanimous, "majority": majority,
                "weighted": WeightedAggregator}
    if name not in builders:
        raise ValueError(f"aggregation.name={name!r} is unknown; use one of {', '.join(POLICIES)}")
    try:
        return builders[name](**params)
    except TypeError as error:
        raise ValueError(f"aggregation {name!r}: bad parameters {sorted(params)} ({error})") from error


__all__ = ["POLICIES", "AlwaysAggregate", "ThresholdAggregator", "WeightedAggregator",
           "make_aggregator"]
