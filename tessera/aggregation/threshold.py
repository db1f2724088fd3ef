"""Agreement-threshold aggregators: bypass the aggregator when the modal answer's vote share
reaches a threshold: `unanimous` (1), `majority` (2/3 by default) and `weighted` (reliabilities)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from tessera.aggregation.votes import ballot
from tessera.interface import AggregationDecision


def _check_threshold(name: str, threshold: float) -> None:
    if not 0 < threshold <= 1:
        raise ValueError(f"aggregation.threshold={threshold!r} is invalid for {name!r}: use a vote "
                         f"share in (0, 1], e.g. 1.0 (unanimous) or 0.67 (majority)")


@dataclass(frozen=True, slots=True)
class ThresholdAggregator:
    """Bypass iff the modal answer's share of (deduplicated) voters is >= threshold."""

    name: str = "majority"
    threshold: float = 2 / 3
    count_duplicates: bool = False
    min_voters: int = 2  # a single (deduplicated) voter never bypasses

    def __post_init__(self) -> None:
        _check_threshold(self.name, self.threshold)

    def decide(self, answers: Sequence[str | None], experts: Sequence[str]) -> AggregationDecision:
        votes = ballot(answers, experts, self.count_duplicates)
        answer, share = votes.modal()
        if answer is not None and share >= self.threshold - 1e-9 and votes.num_voters >= self.min_voters:
            return AggregationDecision(True, answer, share)
        return AggregationDecision(False, None, share)


def unanimous(count_duplicates: bool = False, min_voters: int = 2) -> ThresholdAggregator:
    """Bypass only when every voter gives the same parsable answer."""
    return ThresholdAggregator("unanimous", 1.0, count_duplicates, min_voters)


def majority(threshold: float = 2 / 3, count_duplicates: bool = False,
             min_voters: int = 2) -> ThresholdAggregator:
    return ThresholdAggregator("majority", threshold, count_duplicates, min_voters)


@dataclass(frozen=True, slots=True)
class WeightedAggregator:
    """Bypass iff the modal answer's share of reliability weight is >= threshold.

    weights[expert]: e.g. its validation accuracy; experts missing from it get default_weight.
    """

    weights: dict[str, float] = field(default_factory=dict)
    threshold: float = 0.75
    default_weight: float = 1.0
    count_duplicates: bool = False
    min_voters: int = 2
    name: str = "weighted"

    def __post_init__(self) -> None:
        _check_threshold(self.name, self.threshold)
        bad = {e: w for e, w in self.weights.items() if w < 0}
        if bad or self.default_weight < 0:
            raise ValueError(f"aggregation.weights must be >= 0 (got {bad or self.default_weight})")

    def decide(self, answers: Sequence[str | None], experts: Sequence[str]) -> AggregationDecision:
        votes = ballot(answers, experts, self.count_duplicates)
        weights = {e: self.weights.get(e, self.default_weight) for e, _ in votes.votes}
        answer, share = votes.modal(weights)
        if answer is not None and share >= self.threshold - 1e-9 and votes.num_voters >= self.min_voters:
            return AggregationDecision(True, answer, share)
        return AggregationDecision(False, None, share)
