"""MoA on real models: expert profiles (model folder, system prompt, temperature, output budget), skill routing,
and the chat messages each expert and the aggregator read.

The default pool is ONE small model (SmolLM2-135M-Instruct) under several profiles, standing in for distinct
expert models: "reasoning" profiles think step by step with long output budgets, "instruct" profiles answer
in a few tokens, so generation lengths are skewed as in the paper. Any list of model folders works.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tessera.workload.moa_questions import SKILLS, CheckableQuestion

KINDS = ("reasoning", "instruct")
AGGREGATOR = "aggregator"


@dataclass(frozen=True, slots=True)
class RealExpert:
    """One expert as the runtime serves it. model: a checkpoint folder (None: the run's default folder)."""

    name: str
    kind: str
    system_prompt: str
    temperature: float = 0.0
    max_tokens: int = 16
    model: str | None = None
    skills: dict[str, float] = field(default_factory=dict)  # routing weight per skill (missing: 0)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"expert {self.name!r}: kind={self.kind!r}; use one of {KINDS}")
        if not (isinstance(self.max_tokens, int) and self.max_tokens >= 1):
            raise ValueError(f"expert {self.name!r}: max_tokens={self.max_tokens!r}; use an integer >= 1")
        if not self.temperature >= 0:
            raise ValueError(f"expert {self.name!r}: temperature={self.temperature!r}; use a value >= 0")
        unknown = sorted(set(self.skills) - set(SKILLS))
        if unknown or any(w < 0 for w in self.skills.values()):
            raise ValueError(f"expert {self.name!r}: skills {dict(self.skills)} must map names from {list(SKILLS)} "
                             "to weights >= 0")


REASON = ("You are a careful problem solver. Think step by step in a few short sentences, then finish with "
          "a last line 'Answer: <answer>'. For multiple choice, the answer is the letter.")
BRIEF = "Reply with only the final answer: a number, or the letter of the correct choice. No explanation."
DEFAULT_EXPERTS: tuple[dict, ...] = (
    {"name": "reasoner-math", "kind": "reasoning", "system_prompt": REASON, "temperature": 0.3, "max_tokens": 96,
     "skills": {"arithmetic": 3.0, "units": 2.0, "facts": 0.5}},
    {"name": "reasoner-general", "kind": "reasoning", "system_prompt": REASON, "temperature": 0.7,
     "max_tokens": 96, "skills": {"arithmetic": 1.0, "units": 1.0, "facts": 2.0}},
    {"name": "instruct-quick", "kind": "instruct", "system_prompt": BRIEF, "temperature": 0.0, "max_tokens": 12,
     "skills": {"arithmetic": 1.0, "units": 1.0, "facts": 2.0}},
    {"name": "instruct-facts", "kind": "instruct", "system_prompt": BRIEF, "temperature": 0.5, "max_tokens": 12,
     "skills": {"arithmetic": 0.5, "units": 1.0, "facts": 3.0}},
)
AGGREGATOR_PROMPT = ("You are the judge. Several assistants answered the question below; their answers may "
                     "disagree. Reply with only the correct final answer: a number, or the letter of the "
                     "correct choice.")
DEFAULT_AGGREGATOR = {"name": AGGREGATOR, "kind": "instruct", "system_prompt": AGGREGATOR_PROMPT,
                      "temperature": 0.0, "max_tokens": 12}


def build_experts(specs: list[dict]) -> list[RealExpert]:
    """RealExperts from config dicts; names must be unique and not the aggregator's."""
    experts = []
    for i, spec in enumerate(specs):
        try:
            experts.append(RealExpert(**spec))
        except TypeError as err:
            raise ValueError(f"experts[{i}]: {err}; keys are name, kind, system_prompt, temperature, "
                             "max_tokens, model, skills") from None
    names = [e.name for e in experts]
    if len(set(names)) != len(names) or AGGREGATOR in names:
        raise ValueError(f"expert names {names} must be unique and not {AGGREGATOR!r}")
    return experts


@dataclass(frozen=True, slots=True)
class RoutedQuery:
    """A question and the experts the router sent it to (k distinct experts)."""

    question: CheckableQuestion
    experts: tuple[str, ...]


def route(questions: list[CheckableQuestion], experts: list[RealExpert], k: int, seed: int) -> list[RoutedQuery]:
    """Per question, k distinct experts drawn without replacement with probability ~ skill weight (seeded)."""
    if not 1 <= k <= len(experts):
        raise ValueError(f"experts_per_query={k}: use 1..{len(experts)} (the number of experts)")
    rng = np.random.default_rng([seed, 1717])
    routed = []
    for q in questions:
        weights = np.array([e.skills.get(q.skill, 0.0) for e in experts]) + 1e-3  # every expert reachable
        picks = rng.choice(len(experts), size=k, replace=False, p=weights / weights.sum())
        routed.append(RoutedQuery(q, tuple(experts[i].name for i in sorted(picks))))
    return routed


def expert_messages(expert: RealExpert, question: CheckableQuestion) -> list[dict]:
    return [{"role": "system", "content": expert.system_prompt}, {"role": "user", "content": question.prompt_text()}]


def aggregator_messages(aggregator: RealExpert, question: CheckableQuestion,
                        responses: list[tuple[str, str, str | None]], max_chars: int = 400) -> list[dict]:
    """responses: (expert name, its text, its parsed answer) per expert of the query."""
    parts = [f"Question: {question.prompt_text()}", ""]
    for i, (_, text, answer) in enumerate(responses):
        shown = text.strip()[-max_chars:]
        parts.append(f"Assistant {i + 1} wrote: {shown}\nAssistant {i + 1}'s answer: {answer or 'none'}")
    parts.append("\nWhat is the correct final answer?")
    return [{"role": "system", "content": aggregator.system_prompt}, {"role": "user", "content": "\n".join(parts)}]
