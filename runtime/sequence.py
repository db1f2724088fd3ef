"""A request inside the runtime engine: its tokens, counters the batch scheduler reads, KV state and times.

Implements tessera.interface.SchedulableSeq (vLLM v1 counter model): num_tokens = prompt + generated,
num_computed_tokens = tokens whose KV is in the device pool; a step gives a sequence tokens so the
second catches up with the first, so prefill, chunked prefill, decode and recompute are one rule.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from tessera.runtime.kv_cache import SeqTables


FREE = -1  # in SamplingParams.forced_token_ids: this output token is sampled, not forced


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """temperature 0 is greedy; top_p < 1 samples from the nucleus; seed None derives one from the engine's.

    Forced (teacher-forced) decoding: output token i is forced_token_ids[i] instead of a sample, unless that
    entry is FREE (-1); tokens past the tuple are sampled. Forced tokens are fed back like sampled ones (one
    decode step each, the KV policy active) and never stop a request (only max_tokens does). logprobs: record
    the log-probability (log-softmax of the raw logits, temperature ignored) of every output token taken,
    forced or sampled, in Sequence.output_logprobs: teacher-forced scoring, e.g. bits per byte.
    """

    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 16
    stop_token_ids: tuple[int, ...] = ()
    ignore_eos: bool = False
    seed: int | None = None
    forced_token_ids: tuple[int, ...] = ()
    logprobs: bool = False

    def __post_init__(self) -> None:
        number = (int, float)
        checks = [("temperature", isinstance(self.temperature, number) and math.isfinite(self.temperature)
                   and self.temperature >= 0.0, "a finite value >= 0 (0 is greedy)"),
                  ("top_p", isinstance(self.top_p, number) and 0.0 < self.top_p <= 1.0, "a fraction in (0, 1]"),
                  ("max_tokens", isinstance(self.max_tokens, int) and not isinstance(self.max_tokens, bool)
                   and self.max_tokens >= 1, "an integer >= 1"),
                  ("forced_token_ids", all(isinstance(t, int) and t >= FREE for t in self.forced_token_ids),
                   "a tuple of token ids, FREE (-1) where the token is sampled")]
        for name, ok, allowed in checks:
            if not ok:
                raise ValueError(f"sampling.{name}={getattr(self, name)!r} is invalid: use {allowed}")

    def forced_at(self, step: int) -> int:
        """The token forced as output token `step` (0-based), or FREE."""
        return self.forced_token_ids[step] if step < len(self.forced_token_ids) else FREE


class Sequence:
    """Counters, not phases: prefill is num_computed_tokens < num_tokens with its KV not yet complete."""

    def __init__(self, request_id: int, prompt_token_ids: list[int], params: SamplingParams, arrival_s: float,
                 tables: SeqTables, generator: torch.Generator) -> None:
        if not prompt_token_ids:
            raise ValueError(f"request {request_id}: empty prompt")
        self.request_id = request_id
        self.prompt_token_ids = list(prompt_token_ids)
        self.output_token_ids: list[int] = []
        self.output_logprobs: list[float] = []  # one per output token when params.logprobs
        self.params = params
        self.num_prompt_tokens = len(prompt_token_ids)
        self.num_computed_tokens = 0
        self.tables = tables
        self.generator = generator
        self.rk = None  # tessera.kvcache RequestKV, set by the engine
        self.decoded_since_prefill = False  # False until the first decode after a (re)prefill: first rank
        self.num_preemptions = 0
        self.bytes_moved = 0  # host <-> device KV bytes (d2h + h2d)
        self.d2h_bytes = 0
        self.h2d_bytes = 0
        self.num_reloads = 0
        self.arrival_s = arrival_s
        self.first_scheduled_s = math.nan
        self.first_token_s = math.nan
        self.finish_s = math.nan
        self.status = "waiting"
        self.finish_reason: str | None = None

    @property
    def num_tokens(self) -> int:
        return self.num_prompt_tokens + len(self.output_token_ids)

    @property
    def num_blocks(self) -> int:
        """Device blocks (head-pages) the request holds."""
        return self.tables.num_device_blocks

    @property
    def token_ids(self) -> list[int]:
        return self.prompt_token_ids + self.output_token_ids

    @property
    def is_finished(self) -> bool:
        return self.status == "finished"

    def preempt(self) -> None:
        """Preemption by recompute: the KV is gone; prompt and generated tokens are computed again."""
        self.num_computed_tokens = 0
        self.num_preemptions += 1
        self.decoded_since_prefill = False
        self.status = "preempted"

    def __repr__(self) -> str:
        return (f"Sequence(id={self.request_id}, tokens={self.num_tokens}, computed={self.num_computed_tokens}, "
                f"generated={len(self.output_token_ids)}/{self.params.max_tokens}, {self.status})")
