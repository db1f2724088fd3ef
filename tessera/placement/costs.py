"""Offline-profiled costs for MOSAIC (mosaic.md §2.3), read off the simulator's cost model.

Per expert on a GPU: prefill seconds per token, decode step time as a function of batch size, the
replica memory m_e = weights + activation reserve + KV reservation, and the load time lambda_e.
A prompt's cost is c_p = a_e * prompt_tokens + predicted_output * d_e(B*) / B*: its prefill plus its
share of the decode steps of a steady batch of B* sequences (the amortised GPU time).
KV reservation rule: room for B* sequences of the expert's mean length (prompt + output), and at
least one sequence of the longest possible length (prompt + max output tokens).
"""
from __future__ import annotations

from dataclasses import dataclass, field
import numpy as np

from tessera.cost import make_cost_model
from tessera.cost.roofline import check_tp
from tessera.hardware import gpu as gpu_by_name
from tessera.interface import BatchShape
from tessera.memory import MemoryConfig
from tessera.types import GPUSpec, Request
from tessera.workload.moa import MoAWorkload, expert_info, moa_experts, output_lengths
from tessera.placement.problem import MoAPlacementProblem, PlacementInputError, is_finite_real, is_whole_number
from tessera.workload.checks import MAX_TOKENS

PREDICTORS = ("mean", "quantile", "oracle")
DECODE_BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def _assumed(default, why: str):
    return field(default=default, metadata={"assumption": why})


@dataclass(frozen=True, slots=True)
class CostConfig:
    """How profiled costs are derived. length_predictor 'oracle' uses the true lengths (an upper-
    bound ablation: label results with it)."""

    cost_model: str = "roofline"
    batch_size: int = _assumed(32, "B*: steady running batch per replica when several share a GPU")
    sequential_batch_size: int = _assumed(256, "B* of the sequential baseline (vLLM max_num_seqs)")
    prefill_chunk_tokens: int = 2048
    length_predictor: str = "mean"
    quantile: float = 0.5
    profile_samples: int = 4000  # draws of the validation split per expert kind
    weight_load_Bps: float = _assumed(5e9, "weights read from local NVMe at ~5 GB/s")
    engine_start_s: float = _assumed(15.0, "vLLM engine start + CUDA-graph capture, 8B model")
    teardown_s: float = 10.0  # Symbolic-MoE sleeps 10 s after tearing an engine down
    instruct_max_replicas: int | None = 1  # mode pin_light: None lets the ILP replicate them too
    memory: MemoryConfig = field(default_factory=MemoryConfig)

    def __post_init__(self) -> None:
        def whole(value) -> bool:
            return is_whole_number(value) and value >= 1

        checks = [
            ("batch_size", whole(self.batch_size), "a whole number >= 1"),
            ("sequential_batch_size", whole(self.sequential_batch_size), "a whole number >= 1"),
            ("prefill_chunk_tokens", whole(self.prefill_chunk_tokens), "a whole number >= 1"),
            ("profile_samples", whole(self.profile_samples), "a whole number >= 1"),
            ("length_predictor", self.length_predictor in PREDICTORS, f"one of {PREDICTORS}"),
            ("quantile", is_finite_real(self.quantile) and 0 < self.quantile < 1, "a fraction in (0, 1)"),
            ("weight_load_Bps", is_finite_real(self.weight_load_Bps) and self.weight_load_Bps > 0,
             "a finite, positive bandwidth in bytes/s"),
            ("engine_start_s", is_finite_real(self.engine_start_s) and self.engine_start_s >= 0,
             "finite seconds >= 0"),
            ("teardown_s", is_finite_real(self.teardown_s) and self.teardown_s >= 0, "finite seconds >= 0"),
            ("instruct_max_replicas", self.instruct_max_replicas is None
             or whole(self.instruct_max_replicas), "None or a whole number >= 1"),
        ]
        for name, ok, allowed in checks:
            if not ok:
                raise PlacementInputError(f"costs.{name}={getattr(self, name)!r} is invalid: use {allowed}")


@dataclass(frozen=True, slots=True)
class ExpertProfile:
    """What a profiling run measures for one expert on one GPU type (tp GPUs)."""

    expert: str
    gpu: str
    tp: int
    prefill_s_per_token: float
    decode_step_s: dict[int, float]  # batch size -> step time at the expert's mean context
    mean_context_tokens: float
    weight_bytes: float
    kv_bytes_per_token: int
    kv_reserve_tokens: int
    memory_bytes: float  # per GPU of the replica: weights/tp + activation reserve + KV reservation
    load_s: float

    def decode_step_at(self, batch_size: int) -> float:
        sizes = np.array(sorted(self.decode_step_s))
        return float(np.interp(batch_size, sizes, [self.decode_step_s[b] for b in sizes]))


def profile_expert(expert: str, gpu: GPUSpec, config: CostConfig, mean_prompt_tokens: float,
                   mean_output_tokens: float, tp: int = 1) -> ExpertProfile:
    spec = expert_info(expert).model
    cost = make_cost_model(config.cost_model, spec, gpu, tp)
    chunk = config.prefill_chunk_tokens
    prefill = cost.iteration_time(BatchShape(prefill_tokens=chunk,
                                             prefill_attn_pairs=chunk * (chunk + 1) / 2)) / chunk
    context = mean_prompt_tokens + mean_output_tokens / 2  # mean KV read per decode step
    steps = {b: cost.iteration_time(BatchShape(decode_seqs=b, decode_kv_tokens=b * context))
             for b in DECODE_BATCH_SIZES}
    batch = config.batch_size if tp == 1 else config.sequential_batch_size
    longest = int(mean_prompt_tokens) + expert_info(expert).max_output_tokens
    reserve = max(int(batch * (mean_prompt_tokens + mean_output_tokens)), longest)
    kv_per_token = spec.kv_bytes_per_token
    memory = (spec.weight_bytes / tp + config.memory.activation_reserve_gib * 2**30
              + reserve * kv_per_token / tp)
    load = load_time_s(expert, config, tp)
    return ExpertProfile(expert, gpu.name, tp, prefill, steps, context, spec.weight_bytes,
                         kv_per_token, reserve, memory, load)


def load_time_s(expert: str, config: CostConfig, tp: int = 1) -> float:
    """lambda_e: engine start + reading the replica's share of the weights."""
    return config.engine_start_s + expert_info(expert).model.weight_bytes / tp / config.weight_load_Bps


def predicted_output_tokens(workload: MoAWorkload, experts: list[str], config: CostConfig
                            ) -> dict[str, float]:
    """Per expert: mean or quantile of its output length on a separate validation draw (one draw
    per expert kind and cap, seeded from the workload's seed)."""
    draws: dict[tuple[str, int], np.ndarray] = {}
    predicted = {}
    for name in experts:
        info = expert_info(name)
        key = (info.kind, info.max_output_tokens)
        if key not in draws:
            rng = np.random.default_rng([workload.seed, 7919, len(draws)])
            draws[key] = output_lengths(workload.config, info.kind, config.profile_samples, rng,
                                        info.max_output_tokens)[0]
        lengths = draws[key]
        predicted[name] = float(np.quantile(lengths, config.quantile)
                                if config.length_predictor == "quantile" else lengths.mean())
    return predicted


def build_placement_problem(workload: MoAWorkload, gpus: list[GPUSpec | str],
                            config: CostConfig | None = None,
                            requests: list[Request] | None = None) -> MoAPlacementProblem:
    """The MOSAIC placement problem of the workload's expert stage (or of `requests`, e.g. the
    aggregator stage's) on one worker per GPU."""
    config = config or CostConfig()
    if not gpus:
        raise PlacementInputError("build_placement_problem: no workers (an empty GPU list); fix: "
                                  "cluster.num_workers >= 1")
    gpus = [gpu_by_name(g) if isinstance(g, str) else g for g in gpus]
    if len({g.name for g in gpus}) != 1:
        raise PlacementInputError(f"build_placement_problem: workers must share one GPU type (got "
                                  f"{sorted({g.name for g in gpus})}); per-worker costs are not modelled yet")
    gpu, num_workers = gpus[0], len(gpus)
    requests = workload.expert_requests() if requests is None else requests
    if not requests:
        raise PlacementInputError("build_placement_problem: no requests to place; fix: a workload with at "
                                  "least one query (params.query_fraction > 0)")
    pool_order = list(moa_experts())
    strangers = sorted({str(r.model) for r in requests if r.model not in pool_order})
    if strangers:
        raise PlacementInputError(f"build_placement_problem: requests name model(s) {strangers} outside the MoA "
                                  f"expert pool {pool_order}; fix the requests' model names")
    def counts_ok(r: Request) -> bool:
        return all(is_whole_number(n) and 1 <= n <= MAX_TOKENS for n in (r.prompt_tokens, r.output_tokens))

    bad = next((r for r in requests if not counts_ok(r)), None)
    if bad is not None:
        raise PlacementInputError(f"build_placement_problem: request {bad.request_id} has prompt_tokens="
                                  f"{bad.prompt_tokens!r}, output_tokens={bad.output_tokens!r}; token counts "
                                  f"must be whole numbers from 1 to {MAX_TOKENS:,}")
    experts = sorted({r.model for r in requests}, key=pool_order.index)
    index = {name: i for i, name in enumerate(experts)}
    predicted = predicted_output_tokens(workload, experts, config)
    profiles, profiles_tp = {}, {}
    for name in experts:
        mean_prompt = float(np.mean([r.prompt_tokens for r in requests if r.model == name]))
        profiles[name] = profile_expert(name, gpu, config, mean_prompt, predicted[name])
        if _tp_ok(name, num_workers):
            profiles_tp[name] = profile_expert(name, gpu, config, mean_prompt, predicted[name],
                                               tp=num_workers)
    costs, costs_tp = [], []
    for r in requests:
        output = r.output_tokens if config.length_predictor == "oracle" else predicted[r.model]
        costs.append(prompt_cost_s(profiles[r.model], r.prompt_tokens, output, config.batch_size))
        if len(profiles_tp) == len(experts):
            costs_tp.append(prompt_cost_s(profiles_tp[r.model], r.prompt_tokens, output,
                                          config.sequential_batch_size))
    caps = tuple(num_workers if expert_info(e).kind == "reasoning" or config.instruct_max_replicas
                 is None else min(config.instruct_max_replicas, num_workers) for e in experts)
    has_tp = len(profiles_tp) == len(experts)
    return MoAPlacementProblem(
        workers=tuple(f"{gpu.name}:{w}" for w in range(num_workers)), experts=tuple(experts),
        worker_memory_bytes=(gpu.hbm_bytes * config.memory.gpu_memory_utilization,) * num_workers,
        expert_memory_bytes=tuple(profiles[e].memory_bytes for e in experts),
        expert_load_s=tuple(profiles[e].load_s for e in experts), max_replicas=caps,
        prompt_expert=tuple(index[r.model] for r in requests), prompt_cost_s=tuple(costs),
        expert_kinds=tuple(expert_info(e).kind for e in experts),
        prompt_ids=tuple(r.request_id for r in requests),
        prompt_cost_tp_s=tuple(costs_tp) if has_tp else (),
        expert_load_tp_s=tuple(profiles_tp[e].load_s for e in experts) if has_tp else (),
        teardown_s=config.teardown_s)


def prompt_cost_s(profile: ExpertProfile, prompt_tokens: int, output_tokens: float,
                  batch_size: int) -> float:
    """Amortised GPU seconds of one prompt: its prefill + its share of batch_size-wide decode steps."""
    return (profile.prefill_s_per_token * prompt_tokens
            + output_tokens * profile.decode_step_at(batch_size) / batch_size)


def _tp_ok(expert: str, tp: int) -> bool:
    try:
        check_tp(expert_info(expert).model, tp)
    except ValueError:
        return False
    return True
