"""Model FLOPs and HBM bytes of what a worker ran (from its WorkTotals), and its MFU and MBU: model FLOPs and
bytes over what its GPUs' peak bf16 FLOP/s and HBM bandwidth allow in the same time."""
from __future__ import annotations

from tessera.models import active_linear_params_per_layer, expert_params
from tessera.sim.batch_log import WorkTotals
from tessera.types import WorkerSpec


def model_flops(spec: WorkerSpec, t: WorkTotals) -> float:
    """2 per active weight per token through the layers, 4 per (query, key, head, dim) of attention, the LM head on
    sampled tokens."""
    m = spec.model
    linear = 2.0 * m.num_layers * active_linear_params_per_layer(m) * t.tokens
    attention = 4.0 * m.num_layers * m.num_heads * m.head_dim * (t.prefill_attn_pairs + t.decode_kv_tokens)
    lm_head = 2.0 * m.vocab_size * m.hidden_size * t.sampled_tokens
    return linear + attention + lm_head


def hbm_bytes(spec: WorkerSpec, t: WorkTotals) -> float:
    """The weights once per iteration (a MoE model: the shared part and, per iteration, the experts its tokens touch
    under uniform routing, as the roofline reads them), KV read by decodes and written for every token, and extra
    traffic (page-score metadata)."""
    m = spec.model
    d = m.dtype_bytes
    per_layer = active_linear_params_per_layer(m)
    weights = t.iterations * (m.num_layers * per_layer + m.vocab_size * m.hidden_size) * d
    if m.is_moe:
        miss = 1.0 - m.experts_per_token / m.num_experts
        touched = sum(count * m.num_experts * (1.0 - miss ** tokens) for tokens, count in t.batch_tokens.items())
        weights += (touched - t.iterations * m.experts_per_token) * m.num_layers * expert_params(m) * d
    kv_per_token = m.num_layers * 2 * m.num_kv_heads * m.head_dim * d
    return weights + (t.decode_kv_tokens + t.tokens) * kv_per_token + t.extra_hbm_bytes


def utilization(spec: WorkerSpec, t: WorkTotals, seconds: float) -> tuple[float, float]:
    """(MFU, MBU) over `seconds` of the worker's GPUs (tp x pp of them) at their peak bf16 FLOP/s and HBM bandwidth."""
    if not seconds > 0:
        return float("nan"), float("nan")
    gpus = spec.tp * getattr(spec, "pp", 1)
    return (model_flops(spec, t) / (seconds * gpus * spec.gpu.peak_bf16_flops),
            hbm_bytes(spec, t) / (seconds * gpus * spec.gpu.hbm_bandwidth_Bps))

