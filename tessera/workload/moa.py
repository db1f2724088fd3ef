"""Skill-routed Mixture-of-Agents workload (Symbolic-MoE pool): queries, expert and aggregator requests.

Each query is routed to k experts (with replacement, skewed by a per-dataset routing matrix); each
slot gets an output length (with its reasoning share) and a parsed answer from the answer model.
Ignores arrival processes: the whole batch arrives at 0 s, as in Symbolic-MoE's offline runs.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from tessera.interface import AggregationDecision, Aggregator
from tessera.models import SYMBOLIC_MOE_POOL, model
from tessera.types import Expert, Query, Request
from tessera.workload.moa_answers import AnswerModel
from tessera.workload.moa_defaults import (DATASETS, INSTRUCT_MAX_OUTPUT_TOKENS,
                                           REASONING_EXPERTS, REASONING_MAX_OUTPUT_TOKENS,
                                           MoAConfig)
from tessera.workload.spec import build_lengths

EXPERT_STAGE, AGGREGATOR_STAGE = "expert", "aggregator"
MIN_QUESTION_TOKENS = 8


@lru_cache(maxsize=1)
def moa_experts() -> dict[str, Expert]:
    """The 16 Symbolic-MoE experts by catalog name, with kind and max output tokens."""
    experts = {}
    for short, name in SYMBOLIC_MOE_POOL.items():
        is_reasoning = short in REASONING_EXPERTS
        experts[name] = Expert(name, model(name), "reasoning" if is_reasoning else "instruct",
                               REASONING_MAX_OUTPUT_TOKENS if is_reasoning
                               else INSTRUCT_MAX_OUTPUT_TOKENS)
    return experts


def expert_info(name: str) -> Expert:
    """The pool Expert for a catalog name; the aggregators are pool members too."""
    experts = moa_experts()
    if name not in experts:
        raise ValueError(f"{name!r} is not in the MoA expert pool; known: {', '.join(experts)}")
    return experts[name]


@dataclass(frozen=True, slots=True)
class ExpertSlot:
    """One routed expert of a query: its prompt, its output (reasoning included) and parsed answer."""

    expert: str
    prompt_tokens: int
    output_tokens: int
    reasoning_tokens: int
    answer: str | None  # None: unparsable (an abstention)

    @property
    def answer_tokens(self) -> int:
        """The part of the output after the reasoning (what survives `</think>` stripping)."""
        return self.output_tokens - self.reasoning_tokens


@dataclass(frozen=True, slots=True)
class MoAQuery:
    """One MoA query with everything the answer model decided for it ahead of time.

    aggregator_answer is what the aggregator would answer if called (None: unparsable).
    """

    query_id: int
    dataset: str
    skill: str
    question_tokens: int
    reference_answer: str
    slots: tuple[ExpertSlot, ...]
    aggregator: str
    aggregator_output_tokens: int
    aggregator_answer: str | None

    @property
    def experts(self) -> tuple[str, ...]:
        return tuple(slot.expert for slot in self.slots)

    @property
    def answers(self) -> tuple[str | None, ...]:
        return tuple(slot.answer for slot in self.slots)

    def to_query(self) -> Query:
        """The shared types.Query view (its expert_answers filled, abstentions left out)."""
        return Query(self.query_id, self.dataset, self.skill, self.experts,
                     self.slots[0].prompt_tokens, self.reference_answer,
                     {i: s.answer for i, s in enumerate(self.slots) if s.answer is not None})


@dataclass(frozen=True, slots=True)
class AggregationOutcome:
    """Stage 2 of one query: the policy's decision, the aggregator request (None on bypass), the
    final answer (the modal answer on bypass, else what the aggregator answers) and its correctness."""

    decision: AggregationDecision
    request: Request | None
    final_answer: str | None
    is_correct: bool


@dataclass(frozen=True)
class MoAWorkload:
    """A generated MoA batch: its queries and the config and seed that produced it."""

    queries: tuple[MoAQuery, ...]
    config: MoAConfig
    seed: int

    @property
    def experts_per_query(self) -> int:
        return self.config.experts_per_query

    def expert_request_id(self, query_id: int, slot: int) -> int:
        return query_id * self.experts_per_query + slot

    def aggregator_request_id(self, query_id: int) -> int:
        return len(self.queries) * self.experts_per_query + query_id

    def slot_of(self, request_id: int) -> tuple[MoAQuery, int]:
        """(query, slot index) of an expert request id."""
        query_id, slot = divmod(request_id, self.experts_per_query)
        if not 0 <= query_id < len(self.queries):
            raise KeyError(f"request id {request_id} is not an expert request of this workload "
                           f"(expert ids are 0..{len(self.queries) * self.experts_per_query - 1})")
        return self.queries[query_id], slot

    def expert_requests(self) -> list[Request]:
        """Stage-1 requests, one per (query, slot), ids query_id * k + slot, all arriving at 0 s."""
        return [Request(self.expert_request_id(q.query_id, i), 0.0, s.prompt_tokens,
                        s.output_tokens, model=s.expert, query_id=q.query_id, stage=EXPERT_STAGE)
                for q in self.queries for i, s in enumerate(q.slots)]

    def aggregator_prompt_tokens(self, query: MoAQuery) -> int:
        """Instruction + each expert's response (reasoning stripped if configured) + question."""
        cfg = self.config
        responses = sum(cfg.response_header_tokens
                        + (s.answer_tokens if cfg.strip_reasoning else s.output_tokens)
                        for s in query.slots)
        return cfg.aggregator_instruction_tokens + responses + query.question_tokens

    def aggregator_request(self, query: MoAQuery, arrival_s: float) -> Request:
        """The query's stage-2 request, arriving when its experts have finished (arrival_s)."""
        return Request(self.aggregator_request_id(query.query_id), float(arrival_s),
                       self.aggregator_prompt_tokens(query), query.aggregator_output_tokens,
                       model=query.aggregator, query_id=query.query_id, stage=AGGREGATOR_STAGE)

    def aggregate(self, query: MoAQuery, policy: Aggregator, experts_done_s: float
                  ) -> AggregationOutcome:
        """Apply an aggregation policy to the query's expert answers once its experts finished."""
        decision = policy.decide(list(query.answers), list(query.experts))
        if decision.bypass:
            answer, request = decision.answer, None
        else:
            answer, request = query.aggregator_answer, self.aggregator_request(query, experts_done_s)
        return AggregationOutcome(decision, request, answer, answer == query.reference_answer)

    def expert_counts(self) -> dict[str, int]:
        """Prompts per expert, in pool order (experts without prompts left out)."""
        counts = dict.fromkeys(moa_experts(), 0)
        for query in self.queries:
            for expert in query.experts:
                counts[expert] += 1
        return {name: n for name, n in counts.items() if n}


def routing_probabilities(config: MoAConfig, dataset: str) -> dict[str, float]:
    """P(a slot of a `dataset` query goes to expert e), in pool order."""
    experts = moa_experts()
    given = (config.routing_weights or {}).get(dataset)
    if given is not None:
        unknown = sorted(set(given) - set(experts))
        if unknown:
            raise ValueError(f"moa.routing_weights[{dataset!r}] names unknown experts {unknown}; "
                             f"use catalog names: {', '.join(experts)}")
        weights = {name: float(given.get(name, 0.0)) for name in experts}
    else:
        accuracy = config.accuracy.get(dataset, {})
        weights = {name: float(accuracy.get(name, 0.0)) ** config.routing_sharpness
                   for name in experts}
    if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
        raise ValueError(f"moa.routing_weights[{dataset!r}] must be >= 0 with a positive sum")
    if config.reasoning_share is not None:
        weights = _with_reasoning_share(weights, config.reasoning_share, dataset)
    total = sum(weights.values())
    return {name: w / total for name, w in weights.items()}


def _with_reasoning_share(weights: dict[str, float], share: float, dataset: str) -> dict[str, float]:
    kinds = {name: expert_info(name).kind for name in weights}
    reasoning = sum(w for name, w in weights.items() if kinds[name] == "reasoning")
    instruct = sum(weights.values()) - reasoning
    if reasoning <= 0 or instruct <= 0:
        raise ValueError(f"moa.reasoning_share={share} needs positive routing weight on both "
                         f"reasoning and instruct experts for {dataset!r}; fix: set "
                         f"reasoning_share: null or change routing_weights")
    return {name: w * (share / reasoning if kinds[name] == "reasoning" else (1 - share) / instruct)
            for name, w in weights.items()}


def output_lengths(config: MoAConfig, kind: str, n: int, rng: np.random.Generator,
                   max_output_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """(output tokens capped at max_output_tokens, reasoning tokens) for n answers of an expert kind."""
    spec = config.reasoning_lengths if kind == "reasoning" else config.instruct_lengths
    sampler = _sampler(_freeze(spec), kind)
    if hasattr(sampler, "sample_with_reasoning"):
        _, output, ratio = sampler.sample_with_reasoning(n, rng)
    else:
        _, output = sampler.sample(n, rng)
        ratio = np.zeros(n)
    output = np.clip(np.asarray(output, dtype=np.int64), 1, max_output_tokens)
    reasoning = np.minimum(np.rint(output * ratio).astype(np.int64), output)
    return output, reasoning


@lru_cache(maxsize=8)
def _sampler(frozen_spec: tuple, kind: str):
    return build_lengths(dict(frozen_spec), f"moa.{kind}_lengths")


def _freeze(spec) -> tuple:
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in spec.items()))


def generate_moa_workload(config: MoAConfig | None = None, seed: int = 0) -> MoAWorkload:
    """Queries of config.datasets in order, ids 0..n-1; same config and seed -> same workload."""
    config = config or MoAConfig()
    queries: list[MoAQuery] = []
    for index, dataset in enumerate(config.datasets):
        rng = np.random.default_rng([seed, index])
        queries.extend(_dataset_queries(config, dataset, len(queries), rng))
    return MoAWorkload(tuple(queries), config, seed)


def _dataset_queries(config: MoAConfig, dataset: str, first_id: int,
                     rng: np.random.Generator) -> list[MoAQuery]:
    spec = DATASETS[dataset]
    n, k = config.query_count(dataset), config.experts_per_query
    probs = routing_probabilities(config, dataset)
    names = list(probs)
    routed = rng.choice(len(names), size=(n, k), p=np.array(list(probs.values())))
    skills = rng.integers(len(spec.categories), size=n)
    question = _question_tokens(config, spec.question_chars, n, rng)

    output = np.zeros((n, k), dtype=np.int64)
    reasoning = np.zeros((n, k), dtype=np.int64)
    cap = np.zeros((n, k), dtype=np.int64)
    for expert_index in np.unique(routed):
        rows = routed == expert_index
        expert = expert_info(names[expert_index])
        output[rows], reasoning[rows] = output_lengths(config, expert.kind, int(rows.sum()), rng,
                                                       expert.max_output_tokens)
        cap[rows] = expert.max_output_tokens
    aggregator = expert_info(spec.aggregator)
    agg_output, _ = output_lengths(config, aggregator.kind, n, rng, aggregator.max_output_tokens)

    answers = AnswerModel(spec, config, rng)
    queries = []
    for q in range(n):
        draw = answers.draw_query()
        slots = tuple(
            ExpertSlot(names[routed[q, s]], int(question[q]) + config.expert_instruction_tokens,
                       int(output[q, s]), int(reasoning[q, s]),
                       answers.answer(draw, names[routed[q, s]], output[q, s] >= cap[q, s]))
            for s in range(k))
        agg_answer = answers.aggregate(draw, spec.aggregator, [s.answer for s in slots],
                                       agg_output[q] >= aggregator.max_output_tokens)
        queries.append(MoAQuery(first_id + q, dataset, spec.categories[skills[q]], int(question[q]),
                                draw.reference, slots, spec.aggregator, int(agg_output[q]),
                                agg_answer))
    return queries


def _question_tokens(config: MoAConfig, mean_chars: float, n: int,
                     rng: np.random.Generator) -> np.ndarray:
    """Log-normal question lengths whose mean is mean_chars / chars_per_token."""
    mean_tokens = mean_chars / config.chars_per_token
    sigma = config.question_length_sigma
    draws = rng.lognormal(np.log(mean_tokens) - sigma**2 / 2, sigma, size=n)
    return np.maximum(np.rint(draws).astype(np.int64), MIN_QUESTION_TOKENS)
