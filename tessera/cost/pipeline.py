"""Pipeline parallelism: a model split into `pp` stages of consecutive layers, each stage on its own `tp` GPUs.

A worker's iteration is split into micro-batches that flow through the stages; the step time is the
pipeline's period (docs/fidelity.md "Pipeline parallelism"), and activations cross each stage boundary.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

from tessera.cost.network import transfer_time
from tessera.interface import BatchShape, CostModel
from tessera.models import active_linear_params_per_layer, linear_params_per_layer
from tessera.types import LinkSpec, ModelSpec

# Tensors sent from one stage to the next per token: vLLM's Llama-family models hand on
# IntermediateTensors({"hidden_states", "residual"}) (vllm/model_executor/models/llama.py, v0.6+),
# two (tokens, hidden) activations.
ACTIVATIONS_SENT = 2


def stage_model(model: ModelSpec, pp: int) -> ModelSpec:
    """The largest stage as a model of its own: ceil(L/pp) layers and one vocab table (embedding or LM head).

    Its KV per token, weights and layer costs are one stage's; it keeps the vocab, so its cost includes the
    LM head (the last stage's, the slowest). Name and everything else unchanged.
    """
    if not isinstance(pp, int) or pp < 1:
        raise ValueError(f"cluster.pp={pp!r}: use an integer >= 1 (pipeline stages)")
    if pp == 1:
        return model
    if pp > model.num_layers:
        raise ValueError(f"cluster.pp={pp} exceeds {model.name}'s {model.num_layers} layers; use pp <= "
                         f"{model.num_layers}")
    layers = math.ceil(model.num_layers / pp)
    vocab = model.vocab_size * model.hidden_size
    params = layers * linear_params_per_layer(model) + vocab
    active = layers * active_linear_params_per_layer(model) + vocab
    return dataclasses.replace(model, num_layers=layers, num_params=float(params),
                               num_active_params=float(active) if model.is_moe else None)


class PipelineCostModel:
    """CostModel of a pp-stage worker from the cost of its largest stage.

    An iteration's sequences are spread over m = min(microbatches, sequences) micro-batches as evenly as their
    count allows, prefills first (vLLM's virtual engines each hold their own requests, assigned by count; a prefill
    stays whole in one micro-batch). The shape carries only the prefills' totals, so each prefill is taken as the
    same size: tokens and attention pairs split in proportion to the prefills a micro-batch holds.
    With g(x) the stage's GPU time and c(x) the engine's CPU time for micro-batch x, s(x) one send of its
    activations over the link, and b the micro-batch with the slowest trip, the step (the period at which every
    sequence gets its next token) is
        max(sum over micro-batches of g,  sum over micro-batches of c,  c(b) + pp * g(b) + (pp - 1) * s(b))
    the busiest stage, the engine's one driver process preparing every micro-batch, and one micro-batch's trip
    through every stage (a profile whose CPU overlaps the GPU, cpu_overlapped, leaves c out of the trip).
    microbatches=1 is a lone batch: the sum over stages plus the sends. Every stage is costed as the largest one
    with the LM head (pessimistic by (pp - 1) LM heads per trip). Every sequence advances once per step: a decode
    in a micro-batch beside a long prefill waits for the prefill's trip (lockstep, pessimistic for the decodes).
    """

    def __init__(self, stage: CostModel, pp: int, microbatches: int, link: LinkSpec):
        if not isinstance(microbatches, int) or microbatches < 1:
            raise ValueError(f"cluster.pp_microbatches={microbatches!r}: use an integer >= 1")
        self.stage, self.pp, self.microbatches, self.link = stage, pp, microbatches, link
        self.model, self.gpu, self.tp = stage.model, stage.gpu, stage.tp
        self._send_bytes_per_token = ACTIVATIONS_SENT * stage.model.hidden_size * stage.model.dtype_bytes
        self._split, self._overlapped = _cpu_split(stage)

    @property
    def reads_max_context(self) -> bool:
        return bool(getattr(self.stage, "reads_max_context", False))

    def send_time(self, num_tokens: int) -> float:
        """One stage-to-stage send of num_tokens tokens' activations."""
        return transfer_time(num_tokens * self._send_bytes_per_token, self.link)

    def micro_batches(self, batch: BatchShape) -> list[BatchShape]:
        """The iteration split by sequence: as even a count each as possible, the prefills spread first."""
        pf, ds = batch.prefill_tokens, batch.decode_seqs
        prefills = batch.prefill_seqs or (1 if pf else 0)
        m = min(self.microbatches, ds + prefills)
        if m <= 1:
            return [batch]
        kv_per_seq = batch.decode_kv_tokens / ds if ds else 0.0
        surcharge_per_seq = batch.decode_kv_surcharge / ds if ds else 0.0
        extra = batch.extra_hbm_bytes / m
        total = ds + prefills
        seqs = [total // m + (1 if i < total % m else 0) for i in range(m)]
        held = [prefills // m + (1 if i < prefills % m else 0) for i in range(m)]  # never above seqs[i]
        parts, done = [], 0
        for n_seqs, p in zip(seqs, held):
            # the prefills' tokens by share of prefills, integers summing to the whole
            tokens = pf * (done + p) // prefills - pf * done // prefills if p else 0
            pairs = batch.prefill_attn_pairs * p / prefills if p else 0.0
            done += p
            n = n_seqs - p
            parts.append(BatchShape(prefill_tokens=tokens, prefill_attn_pairs=pairs, decode_seqs=n,
                                    decode_kv_tokens=n * kv_per_seq, extra_hbm_bytes=extra,
                                    prefill_seqs=p if batch.prefill_seqs else 0,
                                    decode_max_context=batch.decode_max_context if n else 0,
                                    decode_kv_surcharge=n * surcharge_per_seq))
        return parts

    def iteration_time(self, batch: BatchShape) -> float:
        if batch.prefill_tokens + batch.decode_seqs <= 0:
            return self.stage.iteration_time(batch)
        micro = self.micro_batches(batch)
        parts = [self._split(b) for b in micro]
        busiest = sum(g for g, _ in parts)
        driver = sum(c for _, c in parts)
        trip = max((0.0 if self._overlapped else c) + self.pp * g + (self.pp - 1) * self.send_time(b.num_tokens)
                   for (g, c), b in zip(parts, micro))
        return max(busiest, driver, trip)

    def transfer_time(self, num_bytes: float, link: LinkSpec) -> float:
        return self.stage.transfer_time(num_bytes, link)


def _cpu_split(stage: CostModel):
    """(batch -> (GPU time, CPU time) of one stage step, whether the CPU time overlaps the GPU's): an engine
    profile's own split, else the roofline's overheads (serial)."""
    if hasattr(stage, "cpu_time") and hasattr(stage, "gpu_time"):
        return (lambda b: (stage.gpu_time(b), stage.cpu_time(b))), bool(stage.profile.cpu_overlapped)
    eff = stage.efficiency

    def split(b: BatchShape) -> tuple[float, float]:
        cpu = eff.overhead_s + eff.seq_overhead_s * b.num_seqs
        return stage.iteration_time(b) - cpu, cpu
    return split, False


def pipelined(build_stage: Callable[[ModelSpec], CostModel], model: ModelSpec, pp: int,
              microbatches: int | None, link: LinkSpec) -> CostModel:
    """build_stage(model) for pp=1; else a PipelineCostModel over build_stage(stage_model(model, pp)).

    microbatches None: pp, one in flight per stage (vLLM's pipeline_parallel_size virtual engines).
    """
    if pp == 1:
        return build_stage(model)
    return PipelineCostModel(build_stage(stage_model(model, pp)), pp, pp if microbatches is None else microbatches,
                             link)
