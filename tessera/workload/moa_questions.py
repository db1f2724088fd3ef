"""Questions with checkable answers for MoA on real models: arithmetic, unit conversions, multiple choice.

Generated from a seed (no data download): each has a skill label the router reads, the text shown to the
experts and the reference answer (a number as text, or a choice letter), so correctness is measured.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tessera.workload.moa_facts import FACTS, UNITS

SKILLS = ("arithmetic", "units", "facts")
LETTERS = "ABCD"


@dataclass(frozen=True, slots=True)
class CheckableQuestion:
    """One question: id, skill (router input), text, choices (empty for free-form numbers), reference answer."""

    question_id: int
    skill: str
    text: str
    answer: str
    choices: tuple[str, ...] = ()

    @property
    def is_choice(self) -> bool:
        return bool(self.choices)

    def prompt_text(self) -> str:
        """The question as the experts read it (choices listed as 'A) ...')."""
        if not self.choices:
            return self.text
        options = "\n".join(f"{LETTERS[i]}) {c}" for i, c in enumerate(self.choices))
        return f"{self.text}\n{options}"


def generate_questions(num_questions: int, seed: int, skills: tuple[str, ...] = SKILLS) -> list[CheckableQuestion]:
    """num_questions questions cycling through `skills` (shuffled order); same seed, same questions."""
    if num_questions < 1:
        raise ValueError(f"num_questions={num_questions}: use >= 1")
    unknown = sorted(set(skills) - set(SKILLS))
    if unknown or not skills:
        raise ValueError(f"skills {unknown or list(skills)} unknown: use names from {list(SKILLS)}")
    rng = np.random.default_rng([seed, 4242])
    makers = {"arithmetic": _arithmetic, "units": _units, "facts": _facts}
    order = [skills[i % len(skills)] for i in range(num_questions)]
    rng.shuffle(order)
    return [makers[skill](i, rng) for i, skill in enumerate(order)]


def _arithmetic(qid: int, rng: np.random.Generator) -> CheckableQuestion:
    a, b = (int(x) for x in rng.integers(2, 30, size=2))
    op = int(rng.integers(3))
    if op == 0:
        text, answer = f"What is {a} + {b}?", a + b
    elif op == 1:
        a, b = max(a, b), min(a, b)
        text, answer = f"What is {a} - {b}?", a - b
    else:
        b = b % 10 + 2
        text, answer = f"What is {a} times {b}?", a * b
    return CheckableQuestion(qid, "arithmetic", text, str(answer))


def _units(qid: int, rng: np.random.Generator) -> CheckableQuestion:
    big, small, factor = UNITS[int(rng.integers(len(UNITS)))]
    n = int(rng.integers(2, 10))
    return CheckableQuestion(qid, "units", f"How many {small} are in {n} {big}?", str(n * factor))


def _facts(qid: int, rng: np.random.Generator) -> CheckableQuestion:
    question, right, wrong = FACTS[int(rng.integers(len(FACTS)))]
    options = [right, *(wrong[i] for i in rng.choice(len(wrong), size=3, replace=False))]
    order = rng.permutation(4)
    choices = tuple(options[i] for i in order)
    return CheckableQuestion(qid, "facts", question, LETTERS[int(np.flatnonzero(order == 0)[0])], choices)
