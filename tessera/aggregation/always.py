"""`always`: the baseline: every query goes to the aggregator model (agreement still reported)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from tessera.aggregation.votes import ballot
from tessera.interface import AggregationDecision


@dataclass(frozen=True, slots=True)
class AlwaysAggregate:
    name: str = "always"
    count_duplicates: bool = False

    def decide(self, answers: Sequence[str | None], experts: Sequence[str]) -> AggregationDecision:
        _, share = ballot(answers, experts, self.count_duplicates).modal()
        return AggregationDecision(False, None, share)
