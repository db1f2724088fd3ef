"""Roofline cost model: an engine iteration's time from the model shape and the GPU's peak numbers.

Each op group (linear layers, element-wise ops, prefill attention, decode attention, LM head) takes
max(FLOPs / achievable FLOP/s, bytes / achievable HBM bandwidth); groups run one after another, then
tensor-parallel all-reduces and a fixed per-iteration CPU overhead are added. Ignores kernel-launch
gaps inside a step, L2 caching, and overlap between groups. Mixture of experts: FLOPs from the active
weights (attention, router, experts_per_token MLPs); weight reads of the experts the batch's tokens touch
(expected distinct experts under uniform routing); every expert sharded across TP ranks (vLLM's default
without expert parallelism), so the all-reduces are a dense model's.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from tessera.cost.network import all_reduce_time_fn, transfer_time
from tessera.interface import BatchShape
from tessera.models import (active_linear_params_per_layer, attention_params_per_layer, expert_params,
                            router_params_per_layer)
from tessera.types import GPUSpec, LinkSpec, ModelSpec

LOGIT_BYTES = 4  # logits are produced in fp32


@dataclass(frozen=True, slots=True)
class RooflineEfficiency:
    """How close the machine gets to the datasheet peaks, and what an iteration costs besides the GPU.

    Defaults come from Vidur's per-layer profiles (data/vidur-profiling): the linear layers of
    Llama-2-7B/70B on H100 and Llama-3-8B on A100 reach 0.70-0.77 of dense BF16 peak at 2-4k
    tokens, and 0.77-0.89 of HBM bandwidth at batch 1 (TP 1). overhead_s is the engine's CPU time
    per step (scheduling, input preparation, sampling, output processing); vLLM-class engines with
    CUDA graphs spend roughly 0.5-2 ms there, so 1 ms is the middle; calibrate it on a machine.
    seq_overhead_s is the engine's CPU time per sequence in the batch (input preparation, sampling,
    bookkeeping; a prefill counts as one sequence): 0 by default, fitted by tessera/cost/calibration.py
    where a Python engine's per-request work is a visible share of a step (the CPU runtime).
    """

    flops_fraction: float = 0.7
    hbm_fraction: float = 0.8
    overhead_s: float = 1e-3
    seq_overhead_s: float = 0.0

    def __post_init__(self):
        for field in ("flops_fraction", "hbm_fraction", "overhead_s", "seq_overhead_s"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise ValueError(f"RooflineEfficiency.{field}={value!r} is not a finite number: give "
                                 f"backend.cost.params.{field} as one")
        for field, value in (("flops_fraction", self.flops_fraction),
                             ("hbm_fraction", self.hbm_fraction)):
            if not 0.0 < value <= 1.0:
                raise ValueError(f"RooflineEfficiency.{field}={value!r} is out of range: allowed "
                                 f"(0, 1], the achievable fraction of the datasheet peak")
        if not 0.0 <= self.overhead_s < 1.0:
            raise ValueError(f"RooflineEfficiency.overhead_s={self.overhead_s!r} is out of range: "
                             f"allowed [0, 1) seconds of CPU time per iteration")
        if not 0.0 <= self.seq_overhead_s < 0.1:
            raise ValueError(f"RooflineEfficiency.seq_overhead_s={self.seq_overhead_s!r} is out of range: "
                             f"allowed [0, 0.1) seconds of CPU time per sequence in a batch")


def check_tp(model: ModelSpec, tp: int) -> None:
    """Tensor parallelism must split the attention heads evenly (KV heads split or replicate)."""
    if not isinstance(tp, int) or tp < 1:
        raise ValueError(f"tp must be a positive integer, got {tp!r}")
    kv = model.num_kv_heads
    if model.num_heads % tp or (kv % tp and tp % kv):
        raise ValueError(f"tp={tp} does not divide {model.name}'s {model.num_heads} attention heads "
                         f"/ {kv} KV heads; choose tp among the common divisors")


class RooflineCostModel:
    """CostModel from first principles; every per-iteration constant is precomputed in __init__."""

    def __init__(self, model: ModelSpec, gpu: GPUSpec, tp: int = 1,
                 efficiency: RooflineEfficiency | None = None, use_nccl_tables: bool = True):
        check_tp(model, tp)
        eff = efficiency or RooflineEfficiency()
        self.model, self.gpu, self.tp, self.efficiency = model, gpu, tp, eff
        flops = gpu.peak_bf16_flops * eff.flops_fraction
        bw = gpu.hbm_bandwidth_Bps * eff.hbm_fraction
        L, d, h = model.num_layers, model.dtype_bytes, model.hidden_size
        q = model.num_heads * model.head_dim // tp  # query width on this GPU
        kv = max(1, model.num_kv_heads // tp) * model.head_dim  # KV width (replicated if kv < tp)
        inter = model.intermediate_size // tp
        k = model.experts_per_token  # MLPs each token runs through (1 for a dense model)
        vocab = model.vocab_size / tp  # vocab-parallel LM head

        # Linear layers: FLOPs of the weights a token runs through; weights read once per iteration (for
        # MoE: the shared part always, each expert if a token of the batch was routed to it); per token
        # the activations in and out.
        w_active = active_linear_params_per_layer(model) / tp  # = all of a layer's weights if dense
        self._lin_flop_s = L * 2 * w_active / flops
        self._num_experts, self._routed_frac = model.num_experts, k / model.num_experts
        if model.is_moe:
            shared = (attention_params_per_layer(model) + router_params_per_layer(model)) / tp
            self._lin_weight_s = L * shared * d / bw
            self._expert_weight_s = L * expert_params(model) / tp * d / bw
        else:  # one MLP, always read
            self._lin_weight_s = L * w_active * d / bw
            self._expert_weight_s = 0.0
        act = (h + q + 2 * kv) + (q + h) + k * ((h + (3 if model.gated_mlp else 2) * inter) + (inter + h))
        self._lin_act_s = L * act * d / bw
        # Element-wise ops (2 norms, RoPE (none with ALiBi: a bias inside the attention kernel), activation,
        # 2 residual adds, embedding), memory-bound.
        rope = 2 * (q + kv) if model.position_encoding == "rope" else 0
        elementwise = 2 * 2 * h + rope + 3 * k * inter + 2 * 3 * h
        self._elementwise_s = (L * elementwise + 2 * h) * d / bw
        # Prefill attention: 4 FLOPs per (query, key, head, dim); reads Q, writes O, writes new KV.
        self._pf_flop_s = L * 4 * q / flops
        self._pf_token_s = L * (2 * q + 2 * kv) * d / bw
        # Decode attention: streams the KV it attends to; per sequence reads Q, writes O and new KV.
        self._dec_kv_s = L * 2 * kv * d / bw
        self._dec_flop_s = L * 4 * q / flops
        self._dec_seq_s = L * (2 * q + 2 * kv) * d / bw
        # LM head on the sampled tokens only: weights once, logits per token.
        self._lm_weight_s = vocab * h * d / bw
        self._lm_token_s = vocab * LOGIT_BYTES / bw
        self._lm_flop_s = 2 * vocab * h / flops
        self._byte_s = 1.0 / bw
        self._overhead_s = eff.overhead_s
        self._seq_overhead_s = eff.seq_overhead_s
        # TP: two all-reduces of a (tokens, hidden) activation per layer.
        self._all_reduce = all_reduce_time_fn(gpu, tp, use_nccl_tables)
        self._ar_bytes_per_token = h * d
        self._ar_per_layer = 2 * L
        self._ar_cache: dict[int, float] = {}

    def all_reduce_time(self, num_tokens: int) -> float:
        """All TP all-reduces of one iteration of num_tokens tokens (0 at tp=1)."""
        t = self._ar_cache.get(num_tokens)
        if t is None:
            t = self._ar_per_layer * self._all_reduce(num_tokens * self._ar_bytes_per_token)
            if len(self._ar_cache) < 1 << 16:
                self._ar_cache[num_tokens] = t
        return t

    def experts_touched(self, num_tokens: int) -> float:
        """Expected distinct experts per layer that num_tokens tokens are routed to, uniformly: E(1 - (1 - k/E)^n)."""
        return self._num_experts * (1.0 - (1.0 - self._routed_frac) ** num_tokens)

    def weight_read_time(self, num_tokens: int) -> float:
        """Time to read the weights an iteration of num_tokens tokens uses, all layers (no LM head)."""
        if self._expert_weight_s:
            return self._lin_weight_s + self._expert_weight_s * self.experts_touched(num_tokens)
        return self._lin_weight_s

    def linear_time(self, num_tokens: int) -> float:
        """Linear layers + element-wise ops of all layers for num_tokens tokens (no attention)."""
        compute = num_tokens * self._lin_flop_s
        memory = self.weight_read_time(num_tokens) + num_tokens * self._lin_act_s
        return (compute if compute > memory else memory) + num_tokens * self._elementwise_s

    def _rest_time(self, pf: int, pairs: float, ds: int, kv_tokens: float, extra: float, seqs: int) -> float:
        """Attention, LM head, extra HBM traffic and overhead: the part shared with ProfiledCostModel; seqs: the
        step's sequences (BatchShape.num_seqs), each paying seq_overhead_s and one LM-head token (vLLM v1's
        gpu_model_runner.py: logits_indices = query_start_loc[1:] - 1, every scheduled request's last token, a partial
        prompt chunk's too, whose sample is discarded; vLLM v0 skips partial chunks, so for the sarathi family, a
        v0-era engine that chunks, this counts a logits row per partial chunk too many)."""
        if pf < 0 or ds < 0 or pairs < 0 or kv_tokens < 0 or extra < 0:
            raise ValueError(f"BatchShape counters must be >= 0, got prefill_tokens={pf}, "
                             f"prefill_attn_pairs={pairs}, decode_seqs={ds}, "
                             f"decode_kv_tokens={kv_tokens}, extra_hbm_bytes={extra}")
        t = self._overhead_s + extra * self._byte_s
        if self._seq_overhead_s:
            t += seqs * self._seq_overhead_s
        if pf:
            compute = pairs * self._pf_flop_s
            memory = pf * self._pf_token_s
            t += compute if compute > memory else memory
        if ds:
            compute = kv_tokens * self._dec_flop_s
            memory = kv_tokens * self._dec_kv_s + ds * self._dec_seq_s
            t += compute if compute > memory else memory
        compute = seqs * self._lm_flop_s  # the LM head: one logits row per sequence
        memory = self._lm_weight_s + seqs * self._lm_token_s
        return t + (compute if compute > memory else memory)

    def _rest_terms(self, ds: int) -> tuple[float, float, float, float, float]:
        """_rest_time of a pure-decode step of ds sequences as (t0, c_flop, c_kv, seq_bytes_s, lm): for kv KV tokens
        it is (t0 + max(kv * c_flop, kv * c_kv + seq_bytes_s)) + lm, the same float operations in the same order."""
        t0 = self._overhead_s + 0.0 * self._byte_s
        if self._seq_overhead_s:
            t0 += ds * self._seq_overhead_s
        compute = ds * self._lm_flop_s
        memory = self._lm_weight_s + ds * self._lm_token_s
        return t0, self._dec_flop_s, self._dec_kv_s, ds * self._dec_seq_s, compute if compute > memory else memory

    def decode_step_terms(self, ds: int) -> tuple[float, float, float, float, float, float]:
        """A pure-decode step of ds >= 1 sequences reading kv KV tokens takes
        head + ((t0 + max(kv * c_flop, kv * c_kv + seq_bytes_s)) + lm) -- exactly iteration_time's float result;
        returns (head, t0, c_flop, c_kv, seq_bytes_s, lm) so a decode span sums its steps without a call per step."""
        head = self.linear_time(ds)
        if self.tp > 1:
            head += self.all_reduce_time(ds)
        return (head,) + self._rest_terms(ds)

    def iteration_time(self, batch: BatchShape) -> float:
        pf = batch.prefill_tokens
        ds = batch.decode_seqs
        n = pf + ds
        if n <= 0:
            if n < 0 or batch.extra_hbm_bytes < 0:
                self._rest_time(pf, 0.0, ds, 0.0, batch.extra_hbm_bytes, 0)  # raises
            return batch.extra_hbm_bytes * self._byte_s
        compute = n * self._lin_flop_s
        memory = (self.weight_read_time(n) if self._expert_weight_s else self._lin_weight_s) + n * self._lin_act_s
        t = (compute if compute > memory else memory) + n * self._elementwise_s
        if self.tp > 1:
            t += self.all_reduce_time(n)
        return t + self._rest_time(pf, batch.prefill_attn_pairs, ds, batch.decode_kv_tokens,
                                   batch.extra_hbm_bytes, batch.num_seqs)

    def transfer_time(self, num_bytes: float, link: LinkSpec) -> float:
        return transfer_time(num_bytes, link)
