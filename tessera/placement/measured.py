"""The MOSAIC placement problem from costs measured on the runtime's workers (not from a catalog roofline).

Per expert: prefill seconds per token, decode step time by batch size, load time, weight and KV bytes and the
predicted output length, all profiled on the workers (experiments/calibrate_experts.py). Prompt costs and KV
reservations follow costs.py's rules; `sequential` gets data-parallel costs (one expert on every worker).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tessera.placement.problem import MoAPlacementProblem, PlacementInputError


@dataclass(frozen=True, slots=True)
class MeasuredExpertCosts:
    """One expert as profiled on a worker."""

    expert: str
    kind: str
    prefill_s_per_token: float
    decode_step_s: dict[int, float]  # batch size -> step time
    load_s: float
    weight_bytes: float
    kv_bytes_per_token: float
    predicted_output_tokens: float
    max_output_tokens: int

    def decode_step_at(self, batch_size: float) -> float:
        sizes = sorted(self.decode_step_s)
        return float(np.interp(batch_size, sizes, [self.decode_step_s[b] for b in sizes]))

    def prompt_cost_s(self, prompt_tokens: int, batch_size: int) -> float:
        """Prefill + this prompt's share of batch_size-wide decode steps (costs.py's c_p)."""
        return (self.prefill_s_per_token * prompt_tokens
                + self.predicted_output_tokens * self.decode_step_at(batch_size) / batch_size)

    def kv_reserve_tokens(self, batch_size: int, mean_prompt_tokens: float, max_prompt_tokens: int) -> int:
        """Room for batch_size sequences of the mean length, and at least one of the longest possible length."""
        mean = mean_prompt_tokens + self.predicted_output_tokens
        return int(max(batch_size * mean, max_prompt_tokens + self.max_output_tokens))


@dataclass(frozen=True, slots=True)
class PromptView:
    """A prompt as the placer sees it."""

    request_id: int
    expert: str
    prompt_tokens: int


def measured_problem(prompts: list[PromptView], costs: dict[str, MeasuredExpertCosts], num_workers: int,
                     worker_memory_bytes: float, batch_size: int, instruct_max_replicas: int | None = 1
                     ) -> tuple[MoAPlacementProblem, dict[str, int]]:
    """(problem, KV reservation in tokens per expert). Experts in the order they first appear in `costs`."""
    if not prompts:
        raise PlacementInputError("measured_problem: no prompts to place")
    missing = sorted({p.expert for p in prompts} - set(costs))
    if missing:
        raise PlacementInputError(f"measured_problem: no measured costs for expert(s) {missing}; profile them first")
    experts = [e for e in costs if any(p.expert == e for p in prompts)]
    index = {e: i for i, e in enumerate(experts)}
    reserve = {}
    for e in experts:
        lengths = [p.prompt_tokens for p in prompts if p.expert == e]
        reserve[e] = costs[e].kv_reserve_tokens(batch_size, float(np.mean(lengths)), max(lengths))
    memory = tuple(costs[e].weight_bytes + reserve[e] * costs[e].kv_bytes_per_token for e in experts)
    cost = tuple(costs[p.expert].prompt_cost_s(p.prompt_tokens, batch_size) for p in prompts)
    caps = tuple(num_workers if costs[e].kind == "reasoning" or instruct_max_replicas is None
                 else min(instruct_max_replicas, num_workers) for e in experts)
    problem = MoAPlacementProblem(
        workers=tuple(f"worker:{w}" for w in range(num_workers)), experts=tuple(experts),
        worker_memory_bytes=(float(worker_memory_bytes),) * num_workers, expert_memory_bytes=memory,
        expert_load_s=tuple(costs[e].load_s for e in experts), max_replicas=caps,
        prompt_expert=tuple(index[p.expert] for p in prompts), prompt_cost_s=cost,
        expert_kinds=tuple(costs[e].kind for e in experts), prompt_ids=tuple(p.request_id for p in prompts),
        # `sequential` on workers without tensor parallelism: every worker holds the expert, prompts split evenly
        prompt_cost_tp_s=tuple(c / num_workers for c in cost),
        expert_load_tp_s=tuple(costs[e].load_s for e in experts), teardown_s=0.0)
    return problem, reserve
