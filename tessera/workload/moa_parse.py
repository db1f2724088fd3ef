"""Answers parsed from generated text: a number for free-form questions, a choice letter for multiple choice.

An explicit 'Answer: X' wins; otherwise the last number (free-form) or a lone letter / the text of one choice
(multiple choice). Nothing recognisable is None (an abstention: it never counts as agreement).
"""
from __future__ import annotations

import re

from tessera.workload.moa_questions import LETTERS, CheckableQuestion

_ANSWER = re.compile(r"answer\s*(?:is|:)?\s*[:\-]?\s*\**\s*\(?([A-Za-z0-9.,\-]+)", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_LETTER = re.compile(r"(?<![A-Za-z])\(?([ABCD])\)?(?![A-Za-z])")


def parse_answer(text: str, question: CheckableQuestion) -> str | None:
    """The answer `text` gives to `question` in the reference's form, or None."""
    if question.is_choice:
        return _choice(text, question)
    return _number(text)


def _number(text: str) -> str | None:
    explicit = [m.group(1) for m in _ANSWER.finditer(text)]
    for candidate in reversed(explicit):
        found = _NUMBER.search(candidate)
        if found:
            return _normalise(found.group(0))
    numbers = _NUMBER.findall(text)
    return _normalise(numbers[-1]) if numbers else None


def _normalise(number: str) -> str:
    value = float(number.replace(",", ""))
    return str(int(value)) if value.is_integer() else f"{value:g}"


def _choice(text: str, question: CheckableQuestion) -> str | None:
    for m in reversed(list(_ANSWER.finditer(text))):
        token = m.group(1).strip(".,").upper()
        if token in LETTERS[:len(question.choices)]:
            return token
    named = [LETTERS[i] for i, c in enumerate(question.choices) if re.search(rf"\b{re.escape(c)}\b", text, re.I)]
    if len(named) == 1:
        return named[0]
    letters = _LETTER.findall(text.strip()[:40])  # a reply that starts with the letter: "B) Paris", "(C)"
    return letters[0] if letters else None
