"""Vote counting shared by the aggregation policies: normalise answers, drop abstentions, dedupe.

An unparsable answer (None or empty) is an abstention: it never agrees with anything but still
counts in the denominator. By default each distinct expert votes once: its answer if all its
samples agree, else it abstains (two samples of one model agreeing is weak evidence).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
_ANSWER_IS = re.compile(r"answer is\s*\(?([A-Za-z0-9.\-]+)\)?", re.IGNORECASE)


def normalise(answer: str | None) -> str | None:
    """A canonical answer string (letters upper-cased, numbers canonical), or None if unparsable.

    Accepts an already extracted answer ("b", " 042 ") or a response ending in "The answer is (B)"
    or "\\boxed{42}" (the last match wins, as in Symbolic-MoE's parser).
    """
    if answer is None:
        return None
    text = answer.strip()
    for pattern in (_BOXED, _ANSWER_IS):
        matches = pattern.findall(text)
        if matches:
            text = matches[-1].strip()
            break
    if not text or len(text.split()) > 1:
        return None
    try:
        number = float(text)
    except ValueError:
        return text.upper()
    return str(int(number)) if number.is_integer() else repr(number)


@dataclass(frozen=True, slots=True)
class Ballot:
    """Votes after normalisation and deduplication: (voter expert, answer or None) pairs."""

    votes: tuple[tuple[str, str | None], ...]

    @property
    def num_voters(self) -> int:
        return len(self.votes)

    def tally(self, weights: dict[str, float] | None = None) -> dict[str, float]:
        """Answer -> total weight of its votes (weight 1 per voter if weights is None)."""
        totals: dict[str, float] = {}
        for expert, answer in self.votes:
            if answer is not None:
                totals[answer] = totals.get(answer, 0.0) + (1.0 if weights is None else weights[expert])
        return totals

    def modal(self, weights: dict[str, float] | None = None) -> tuple[str | None, float]:
        """(answer with the most weight, its share of all voters' weight); ties -> first voted."""
        totals = self.tally(weights)
        total_weight = sum(1.0 if weights is None else weights[e] for e, _ in self.votes)
        if not totals or total_weight <= 0:
            return None, 0.0
        best = max(totals, key=totals.get)  # dict order = first vote: deterministic tie-break
        return best, totals[best] / total_weight


def ballot(answers: Sequence[str | None], experts: Sequence[str],
           count_duplicates: bool = False) -> Ballot:
    if len(answers) != len(experts):
        raise ValueError(f"aggregation: {len(answers)} answers but {len(experts)} experts; "
                         f"give one expert name per answer (slot order)")
    normalised = [normalise(a) for a in answers]
    if count_duplicates:
        return Ballot(tuple(zip(experts, normalised)))
    by_expert: dict[str, list[str | None]] = {}
    for expert, answer in zip(experts, normalised):
        by_expert.setdefault(expert, []).append(answer)
    votes = []
    for expert, samples in by_expert.items():
        agreed = samples[0] if len(set(samples)) == 1 else None
        votes.append((expert, agreed))
    return Ballot(tuple(votes))
