"""The scheduler interface: the Protocols every backend (sim, runtime) drives and every policy implements.

Policies are fed plain data views and never know which backend runs them (see docs/architecture.md).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, Sequence, runtime_checkable

from tessera.types import LinkSpec

if TYPE_CHECKING:
    from tessera.kvcache.head_plan import HeadPlan
    from tessera.kvcache.request_kv import RequestKV
    from tessera.kvcache.topk import TopKSource


# --------------------------------------------------------------------------------------------- costs
@dataclass(slots=True)
class BatchShape:
    """What one engine iteration computes, in the counters a cost model needs.

    prefill_tokens: new prompt tokens computed this iteration (all chunks).
    prefill_attn_pairs: sum over those tokens of the context each attends to (query-key pairs).
    decode_seqs: sequences decoding one token.
    prefill_seqs: sequences computing prompt tokens (a chunk or a whole prompt); 0 with prefill tokens counts as
        one (shapes written by hand for a single prompt).
    decode_kv_tokens: sum over decoding sequences of the KV tokens each reads (per layer, per KV
        head on average: a sparse policy that reads 1k of 20k tokens counts 1k).
    extra_hbm_bytes: other device-memory traffic this iteration (e.g. page-score metadata).
    decode_max_context: the longest decoding sequence's context in tokens (the new one included), or 0 when the
        producer does not know it; an engine profile's graph_max_context reads it (0: not checked).
    decode_kv_surcharge: the part of decode_kv_tokens that prices a sparse kernel's lower efficiency
        (kvpolicy.sparse_kernel_efficiency), time and not reads: decode_kv_read_tokens leaves it out.
    """

    prefill_tokens: int = 0
    prefill_attn_pairs: float = 0.0
    decode_seqs: int = 0
    decode_kv_tokens: float = 0.0
    extra_hbm_bytes: float = 0.0
    prefill_seqs: int = 0
    decode_max_context: int = 0
    decode_kv_surcharge: float = 0.0

    @property
    def decode_kv_read_tokens(self) -> float:
        """KV tokens the decodes read (decode_kv_tokens without the sparse kernels' surcharge)."""
        return self.decode_kv_tokens - self.decode_kv_surcharge

    @property
    def num_tokens(self) -> int:
        return self.prefill_tokens + self.decode_seqs

    @property
    def num_seqs(self) -> int:
        """Sequences the engine prepares inputs for this iteration (per-sequence CPU costs and LM-head rows count
        these)."""
        if self.prefill_seqs:
            return self.decode_seqs + self.prefill_seqs
        return self.decode_seqs + (1 if self.prefill_tokens else 0)


@runtime_checkable
class CostModel(Protocol):
    """Time of an engine iteration on one worker, and of a transfer over a link.

    Called once per simulated iteration: implementations keep it to plain float arithmetic.
    """

    def iteration_time(self, batch: BatchShape) -> float: ...

    def transfer_time(self, num_bytes: float, link: LinkSpec) -> float: ...


# ------------------------------------------------------------------------------------ batch schedule
@runtime_checkable
class SchedulableSeq(Protocol):
    """A request as the batch scheduler sees it: token counters, not phases (vLLM v1 style).

    num_tokens = prompt tokens + tokens generated so far; num_computed_tokens = those whose KV exists.
    A step assigns tokens so that num_computed_tokens catches up with num_tokens.
    """

    request_id: int
    num_tokens: int
    num_computed_tokens: int
    num_prompt_tokens: int

    def preempt(self) -> None: ...


class KVBlockPool(Protocol):
    """Device KV blocks as the batch scheduler sees them."""

    block_size: int
    num_blocks: int

    @property
    def num_free_blocks(self) -> int: ...

    def blocks_needed(self, seq: SchedulableSeq, num_new_tokens: int) -> int: ...

    def allocate(self, seq: SchedulableSeq, num_new_tokens: int) -> bool: ...

    def free(self, seq: SchedulableSeq) -> None: ...


@dataclass(slots=True)
class ScheduledBatch:
    """One iteration's work: tokens per scheduled sequence and the sequences preempted to make room."""

    seqs: list = field(default_factory=list)
    num_scheduled_tokens: list[int] = field(default_factory=list)
    preempted: list = field(default_factory=list)

    @property
    def total_tokens(self) -> int:
        return sum(self.num_scheduled_tokens)


class BatchScheduler(Protocol):
    """Picks the next iteration's batch from a worker's waiting and running sequences.

    Called once per engine iteration; may move sequences between `waiting` and `running` and
    free their KV through `pool` when it preempts them (preemption by recompute).
    """

    def schedule(self, waiting, running, pool: KVBlockPool) -> ScheduledBatch: ...


# ------------------------------------------------------------------------------------------ placement
@dataclass(frozen=True, slots=True)
class PlacementProblem:
    """What a placer sees: workers, experts and the prompts to run, with profiled costs.

    worker_memory_bytes[w]: usable memory of worker w.
    expert_memory_bytes[e]: one replica's weights + KV reservation.
    expert_load_s[e]: one-off cost of instantiating e on a worker.
    max_replicas[e]: replica cap.
    prompt_expert[p], prompt_cost_s[p]: prompt p's expert and profiled cost.
    """

    workers: tuple[str, ...]
    experts: tuple[str, ...]
    worker_memory_bytes: tuple[float, ...]
    expert_memory_bytes: tuple[float, ...]
    expert_load_s: tuple[float, ...]
    max_replicas: tuple[int, ...]
    prompt_expert: tuple[int, ...]
    prompt_cost_s: tuple[float, ...]


@dataclass(slots=True)
class PlacementResult:
    """Expert replicas per worker, the worker of every prompt, and how the solution was obtained."""

    replicas: dict[int, list[int]]  # worker index -> expert indices resident there
    assignment: list[int]  # prompt index -> worker index
    makespan_s: float
    method: str
    lower_bound_s: float | None = None
    solve_time_s: float = 0.0
    status: str = "ok"


class Placer(Protocol):
    """(workers, experts, prompts with profiled costs) -> placement + assignment."""

    name: str

    def place(self, problem: PlacementProblem) -> PlacementResult: ...


# ------------------------------------------------------------------------------------------- KV policy
class KVPolicy(Protocol):
    """Per request, per layer, per KV head: which pages are resident and attended, what moves, when to rerank.

    A policy is a HeadPlan (each (layer, KV head)'s mode: full, resident top-K, window, offloaded
    top-K with a rerank interval) plus a factory of per-request states. Backends hold one RequestKV
    per request and call, in order: on_prefill_done, on_decode_step (with top-K pages from real
    scores in the runtime or the head model in the sim), on_reload_done after a reload's copy
    lands, on_preempt, on_finish; each returns a StepSummary (pages held, bytes to move, stall).
    Implementations: tessera/kvcache/policies (full, quest, streaming, head_split, flexicache,
    flexicache_adaptive).
    """

    name: str
    plan: "HeadPlan"

    def new_request(self, request_id: int, prompt_tokens: int, topk_source: "TopKSource | None" = None,
                    track_pages: bool = True) -> "RequestKV": ...


# ----------------------------------------------------------------------------------------- aggregation
@dataclass(frozen=True, slots=True)
class AggregationDecision:
    """Bypass the aggregator with `answer`, or call it (bypass=False, answer=None)."""

    bypass: bool
    answer: str | None
    agreement: float


class Aggregator(Protocol):
    """The experts' answers to one query -> bypass with a chosen answer, or call the aggregator model."""

    name: str

    def decide(self, answers: Sequence[str | None], experts: Sequence[str]) -> AggregationDecision: ...
