"""The MoA answer model: which answer each expert (and the aggregator) gives, right or wrong.

Correlated errors come from a Gaussian copula: slot s of query q is right iff
sqrt(rho) * u_q + sqrt(1 - rho) * e_s < Phi^-1(accuracy), with u_q the query's shared difficulty,
so marginal accuracies are exact and rho sets how often experts are wrong together. Wrong answers
land on the query's distractor with distractor_prob (so wrong experts can agree), else on a
uniformly drawn wrong option. None means an unparsable answer (an abstention).
"""
from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from tessera.workload.moa_defaults import DatasetSpec, MoAConfig

INTEGER_ANSWER_RANGE = 1000  # AIME answers are integers 0-999
_NORMAL = NormalDist()


def answer_options(spec: DatasetSpec) -> tuple[str, ...]:
    if spec.answer_kind == "mcq":
        return tuple(chr(ord("A") + i) for i in range(spec.num_choices))
    return tuple(str(i) for i in range(INTEGER_ANSWER_RANGE))


def _threshold(accuracy: float) -> float:
    """Phi^-1(accuracy), with 0 and 1 mapped to -inf/+inf (never / always right)."""
    if accuracy <= 0:
        return -np.inf
    if accuracy >= 1:
        return np.inf
    return _NORMAL.inv_cdf(accuracy)


def accuracy_of(config: MoAConfig, dataset: str, model: str) -> float:
    table = config.accuracy.get(dataset, {})
    if model not in table:
        raise ValueError(f"moa.accuracy[{dataset!r}] has no entry for {model!r}; fix: add it "
                         f"(known: {', '.join(table) or 'none'})")
    return float(table[model])


@dataclass(frozen=True, slots=True)
class QueryAnswerDraw:
    """The random parts of one query's answers, drawn once so the aggregator reuses the same u_q."""

    reference: str
    distractor: str
    difficulty: float  # u_q


class AnswerModel:
    """Draws references, expert answers and aggregator answers for one dataset from one Generator."""

    def __init__(self, spec: DatasetSpec, config: MoAConfig, rng: np.random.Generator):
        self.spec, self.config, self.rng = spec, config, rng
        self.options = answer_options(spec)
        self._rho = config.error_correlation

    def draw_query(self) -> QueryAnswerDraw:
        reference, distractor = self.rng.choice(len(self.options), size=2, replace=False)
        return QueryAnswerDraw(self.options[reference], self.options[distractor],
                               float(self.rng.standard_normal()))

    def answer(self, draw: QueryAnswerDraw, model: str, truncated: bool) -> str | None:
        """One model's parsed answer to the query (None: unparsable)."""
        is_unparsable = self.rng.random() < self.config.unparseable_prob
        if truncated or is_unparsable:
            return None
        noise = self.rng.standard_normal()
        latent = np.sqrt(self._rho) * draw.difficulty + np.sqrt(1 - self._rho) * noise
        if latent < _threshold(accuracy_of(self.config, self.spec.name, model)):
            return draw.reference
        return self._wrong(draw)

    def aggregate(self, draw: QueryAnswerDraw, aggregator: str, slot_answers: list[str | None],
                  truncated: bool) -> str | None:
        """The aggregator's answer: the strict-majority expert answer with the configured chance,
        else its own answer at its own accuracy (same query difficulty)."""
        follows = self.rng.random() < self.config.aggregator_follows_majority
        majority = strict_majority(slot_answers)
        own = self.answer(draw, aggregator, truncated)
        if truncated:
            return None
        return majority if follows and majority is not None else own

    def _wrong(self, draw: QueryAnswerDraw) -> str:
        if self.rng.random() < self.config.distractor_prob:
            return draw.distractor
        while True:
            pick = self.options[self.rng.integers(len(self.options))]
            if pick != draw.reference:
                return pick


def strict_majority(answers: list[str | None]) -> str | None:
    """The answer given by more than half of all slots (abstentions count in the total), or None."""
    counts: dict[str, int] = {}
    for answer in answers:
        if answer is not None:
            counts[answer] = counts.get(answer, 0) + 1
    for answer, count in counts.items():
        if 2 * count > len(answers):
            return answer
    return None
