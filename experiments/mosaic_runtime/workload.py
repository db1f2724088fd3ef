"""The runtime MoA workload: routed questions rendered into each expert's chat prompt, aggregator prompts
from the experts' real answers, and the answers parsed back.

Request ids follow the simulator's MoA rule: expert prompt (query q, slot s) is q*k + s; aggregator prompts
come after them (offset + q).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tessera.runtime.moa.prompts import ServedRequest, WorkPrompt
from tessera.runtime.tokenizer import load_tokenizer
from tessera.workload.moa_parse import parse_answer
from tessera.workload.moa_real import RealExpert, RoutedQuery, aggregator_messages, expert_messages


@dataclass
class Renderer:
    """Chat prompts -> token ids with each checkpoint's own tokenizer and template (cached per folder)."""

    tokenizers: dict = field(default_factory=dict)

    def tokens(self, folder: str, messages: list[dict]) -> tuple[int, ...]:
        if folder not in self.tokenizers:
            self.tokenizers[folder] = load_tokenizer(folder)
        tok = self.tokenizers[folder]
        try:
            text = tok.apply_chat_template(messages, add_generation_prompt=True)
        except ValueError:  # no chat template (e.g. the byte-level tiny model): the turns as plain text
            return tuple(tok.encode("\n\n".join(m["content"] for m in messages) + "\n"))
        return tuple(tok.encode(text, add_special_tokens=False))


def sampling_seed(seed: int, request_id: int) -> int:
    return int(np.random.default_rng([seed, request_id, 31]).integers(2**31 - 1))


def expert_prompts(routed: list[RoutedQuery], experts: dict[str, RealExpert], renderer: Renderer, seed: int,
                   first_id: int = 0) -> list[WorkPrompt]:
    k = len(routed[0].experts)
    prompts = []
    for q, rq in enumerate(routed):
        for slot, name in enumerate(rq.experts):
            e, rid = experts[name], first_id + q * k + slot
            prompts.append(WorkPrompt(rid, name, renderer.tokens(e.model, expert_messages(e, rq.question)),
                                      e.max_tokens, e.temperature, sampling_seed(seed, rid)))
    return prompts


def aggregator_prompt(request_id: int, rq: RoutedQuery, responses: list[ServedRequest], answers: list[str | None],
                      aggregator: RealExpert, renderer: Renderer, seed: int) -> WorkPrompt:
    shown = [(r.expert, r.text, a) for r, a in zip(responses, answers)]
    tokens = renderer.tokens(aggregator.model, aggregator_messages(aggregator, rq.question, shown))
    return WorkPrompt(request_id, aggregator.name, tokens, aggregator.max_tokens, aggregator.temperature,
                      sampling_seed(seed, request_id))


@dataclass
class ExpertAnswers:
    """Per query, its experts' served requests and parsed answers, in slot order."""

    responses: dict[int, list[ServedRequest]]
    answers: dict[int, list[str | None]]


def parse_expert_stage(routed: list[RoutedQuery], served: list[ServedRequest], first_id: int = 0) -> ExpertAnswers:
    k = len(routed[0].experts)
    by_id = {s.request_id: s for s in served}
    responses, answers = {}, {}
    for q, rq in enumerate(routed):
        got = [by_id[first_id + q * k + slot] for slot in range(k)]
        responses[q] = got
        answers[q] = [parse_answer(s.text, rq.question) for s in got]
    return ExpertAnswers(responses, answers)
