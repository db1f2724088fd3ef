"""The wire format between the MoA driver and its workers: a prompt to serve, a replica to load, what came back.

Plain dataclasses (pickled by Ray); times are seconds since the stage's start (the driver's wall clock).
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class WorkPrompt:
    """One request for an expert replica: tokens already rendered through the model's chat template."""

    request_id: int
    expert: str
    token_ids: tuple[int, ...]
    max_tokens: int
    temperature: float
    seed: int


@dataclass(frozen=True, slots=True)
class ReplicaSpec:
    """Load `model_folder` as expert `expert` with `kv_gib` of KV pool (the plan's reservation)."""

    expert: str
    model_folder: str
    kv_gib: float


@dataclass(frozen=True, slots=True)
class ServedRequest:
    """A finished request as a worker measured it."""

    request_id: int
    expert: str
    worker: int
    start_s: float
    first_token_s: float
    finish_s: float
    prompt_tokens: int
    output_tokens: int
    text: str
    preemptions: int


@dataclass(frozen=True, slots=True)
class ReplicaSpan:
    """One replica's life on a worker: loading from start_s to ready_s, serving until end_s (stage seconds)."""

    worker: int
    expert: str
    start_s: float
    ready_s: float
    end_s: float


@dataclass(slots=True)
class PhaseResult:
    """What one residency phase of one worker returned."""

    worker: int
    served: list[ServedRequest]
    spans: list[ReplicaSpan]
    load_s: dict[str, float]
    steps: list[dict] = field(default_factory=list)  # one row per engine step when the phase was recorded
