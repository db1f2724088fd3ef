"""Aggregation policies: bypass the MoA aggregator when the experts agree (MOSAIC §4), or never.

make_aggregator(name, **params) builds always | unanimous | majority | weighted.
"""
from tessera.aggregation.always import AlwaysAggregate
from tessera.aggregation.factory import POLICIES, make_aggregator
from tessera.aggregation.threshold import ThresholdAggregator, WeightedAggregator, majority, unanimous
from tessera.aggregation.votes import Ballot, ballot, normalise

__all__ = ["POLICIES", "AlwaysAggregate", "Ballot", "ThresholdAggregator", "WeightedAggregator",
           "ballot", "majority", "make_aggregator", "normalise", "unanimous"]
