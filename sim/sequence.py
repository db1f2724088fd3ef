"""A request's mutable state inside the simulator: token counters, KV blocks held, and timestamps.

Implements tessera.interface.SchedulableSeq, so the shared batch schedulers can drive it.
"""
from __future__ import annotations

import math

from tessera.types import Request


class SeqState:
    """Counters, not phases: prefill is num_computed_tokens < num_prompt_tokens (vLLM v1 model)."""

    __slots__ = ("request", "request_id", "num_prompt_tokens", "max_output_tokens", "num_tokens",
                 "num_computed_tokens", "num_generated", "num_blocks", "num_preemptions",
                 "worker_id", "arrival_s", "first_scheduled_s", "first_token_s", "finish_s", "status",
                 "execution_s", "preemption_s", "preempted_at_s", "cohort_base", "cohort_log",
                 "cohort_join", "running_order")

    def __init__(self, request: Request) -> None:
        self.request = request
        self.request_id = request.request_id
        self.num_prompt_tokens = request.prompt_tokens
        self.max_output_tokens = request.output_tokens
        self.num_tokens = request.prompt_tokens  # prompt + generated so far
        self.num_computed_tokens = 0  # tokens whose KV exists on the device
        self.num_generated = 0
        self.num_blocks = 0  # KV blocks held in the worker's pool
        self.num_preemptions = 0
        self.worker_id = -1
        self.arrival_s = request.arrival_s  # on the simulation clock (set again at arrival, to the same time)
        self.first_scheduled_s = math.nan
        self.first_token_s = math.nan
        self.finish_s = math.nan
        self.status = "waiting"
        self.execution_s = 0.0  # summed durations of the iterations this request was part of
        self.preemption_s = 0.0  # summed time from each preemption until scheduled again
        self.preempted_at_s = math.nan
        # in a worker's decode cohort (sim/decode_cohort.py): the cohort step its counters were true at, else -1,
        # and where its pending iteration durations start in the cohort's log
        self.cohort_base = -1
        self.cohort_log = 0
        self.cohort_join = 0  # the cohort's id of its last join (DecodeCohort.longest_context's live entries)
        self.running_order = 0  # a KV-policy worker's admission counter at its last admission (its place in running)

    def preempt(self) -> None:
        """Preemption by recompute: the KV is gone; prompt and generated tokens are computed again."""
        self.num_computed_tokens = 0
        self.num_preemptions += 1
        self.status = "preempted"

    @property
    def is_finished(self) -> bool:
        return self.num_generated >= self.max_output_tokens

    def __repr__(self) -> str:
        return (f"SeqState(id={self.request_id}, tokens={self.num_tokens}, "
                f"computed={self.num_computed_tokens}, generated={self.num_generated}/{self.max_output_tokens})")
