"""Plain data shared by every part of Tessera: hardware, models, workers, requests and MoA queries.

Units are SI throughout (bytes, seconds, bytes/s, FLOP/s); names carry the unit where it is not obvious.
"""
from __future__ import annotations

from dataclasses import dataclass, field

GB = 1e9
GiB = 2**30


@dataclass(frozen=True, slots=True)
class LinkSpec:
    """A point-to-point interconnect (PCIe, NVLink): bandwidth per direction and fixed latency."""

    name: str
    bandwidth_Bps: float  # per direction
    latency_s: float


@dataclass(frozen=True, slots=True)
class GPUSpec:
    """What a roofline needs of one accelerator."""

    name: str
    hbm_bytes: float
    hbm_bandwidth_Bps: float
    peak_bf16_flops: float  # dense, no sparsity
    host_link: str  # LinkSpec name of the host (PCIe) link
    peer_link: str  # LinkSpec name of the GPU-GPU link inside a node


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """Shape of a decoder-only transformer (Llama-style unless noted).

    Mixture of experts: num_experts > 1 routed MLPs per layer of intermediate_size each, experts_per_token
    of them run per token; num_params counts every expert (all are in memory), num_active_params the
    weights one token runs through. position_encoding "rope" or "alibi" (BLOOM: a bias, no rotary op).
    """

    name: str
    hf_id: str
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    num_params: float
    dtype_bytes: int = 2
    gated_mlp: bool = True  # SwiGLU (3 MLP matrices) vs GELU (2)
    max_position: int = 131072
    num_experts: int = 1
    experts_per_token: int = 1
    num_active_params: float | None = None  # None: dense, all of num_params
    position_encoding: str = "rope"

    def __post_init__(self) -> None:
        if not 1 <= self.experts_per_token <= self.num_experts:
            raise ValueError(f"{self.name}: experts_per_token={self.experts_per_token} must be in "
                             f"[1, num_experts={self.num_experts}]")
        if self.position_encoding not in ("rope", "alibi"):
            raise ValueError(f"{self.name}: position_encoding={self.position_encoding!r}: use 'rope' or 'alibi'")

    @property
    def weight_bytes(self) -> float:
        """Every weight in device memory: for a MoE model all experts, not only the active ones."""
        return self.num_params * self.dtype_bytes

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 1

    @property
    def active_params(self) -> float:
        """Parameters one token runs through (the published active count for MoE; num_params if dense)."""
        return self.num_params if self.num_active_params is None else self.num_active_params

    @property
    def kv_bytes_per_token(self) -> int:
        """K and V of one token across all layers and KV heads."""
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * self.dtype_bytes

    @property
    def kv_bytes_per_token_per_head(self) -> int:
        """K and V of one token of one (layer, KV head)."""
        return 2 * self.head_dim * self.dtype_bytes

    @property
    def gqa_group(self) -> int:
        return self.num_heads // self.num_kv_heads


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """One serving replica: a model on `tp` GPUs of one type inside a node (x `pp` pipeline stages).

    gpu_ids: the physical GPUs it runs on (None: GPUs of its own). Replicas that name the same GPU are
        co-resident: they split its memory and take turns on its compute.
    kv_bytes_per_gpu: the KV reservation on each of its GPUs (None: vLLM's rule, all memory left after
        weights and the activation reserve; co-resident replicas must set it).
    ready_s: when the replica can start serving (model load time), seconds from the start of the run.
    pp: pipeline stages, each on its own tp GPUs (tessera/cost/pipeline.py); pp_microbatches: micro-batches
        an iteration is split into (None: pp).
    """

    worker_id: int
    gpu: GPUSpec
    model: ModelSpec
    tp: int = 1
    gpu_ids: tuple[int, ...] | None = None
    kv_bytes_per_gpu: float | None = None
    ready_s: float = 0.0
    pp: int = 1
    pp_microbatches: int | None = None


@dataclass(frozen=True, slots=True)
class Request:
    """One generation request of a workload: when it arrives and how many tokens in and out.

    `model` names the model/expert that must serve it (None: the worker's only model);
    `query_id`/`stage` tie MoA prompts to their query (stage "expert" or "aggregator").
    """

    request_id: int
    arrival_s: float
    prompt_tokens: int
    output_tokens: int
    model: str | None = None
    query_id: int | None = None
    stage: str | None = None


@dataclass(frozen=True, slots=True)
class Expert:
    """A model in a MoA expert pool."""

    name: str
    model: ModelSpec
    kind: str  # "reasoning" | "instruct"
    max_output_tokens: int


@dataclass(slots=True)
class Query:
    """One MoA query: its dataset and skill, the experts it is routed to and its reference answer."""

    query_id: int
    dataset: str
    skill: str
    experts: tuple[str, ...]
    prompt_tokens: int
    reference_answer: str
    expert_answers: dict[int, str] = field(default_factory=dict)  # slot index -> answer
