"""Roofline cost of MoE and ALiBi models: FLOPs from active weights, reads of the touched experts, memory of all."""
import dataclasses

import pytest

from tessera.cost import RooflineCostModel, RooflineEfficiency, make_cost_model
from tessera.hardware import gpu
from tessera.interface import BatchShape
from tessera.memory import MemoryConfig, num_kv_blocks
from tessera.models import expert_params, model

H100 = gpu("H100-SXM-80GB")
NO_OVERHEAD = RooflineEfficiency(overhead_s=0.0)
MIXTRAL = model("Mixtral-8x7B")
QWEN3 = model("Qwen3-30B-A3B")


def test_batch1_decode_reads_only_the_active_weights():
    # One token runs through 2 of Mixtral's 8 experts: ~12.9B params read, not 46.7B.
    cost = RooflineCostModel(MIXTRAL, H100, 2, efficiency=NO_OVERHEAD)
    t = cost.iteration_time(BatchShape(decode_seqs=1, decode_kv_tokens=1))
    active = MIXTRAL.active_params * MIXTRAL.dtype_bytes / 2 / (H100.hbm_bandwidth_Bps * NO_OVERHEAD.hbm_fraction)
    assert cost.experts_touched(1) == pytest.approx(2.0)
    assert t == pytest.approx(active, rel=0.1)
    total = MIXTRAL.weight_bytes / 2 / (H100.hbm_bandwidth_Bps * NO_OVERHEAD.hbm_fraction)
    assert t < 0.4 * total


def test_a_large_batch_reads_every_expert():
    cost = RooflineCostModel(QWEN3, H100, efficiency=NO_OVERHEAD)
    assert cost.experts_touched(1) == pytest.approx(8)
    assert cost.experts_touched(8) == pytest.approx(128 * (1 - (120 / 128) ** 8))
    assert cost.experts_touched(512) == pytest.approx(128, rel=1e-6)
    bw = H100.hbm_bandwidth_Bps * NO_OVERHEAD.hbm_fraction
    all_experts = QWEN3.num_layers * 128 * expert_params(QWEN3) * QWEN3.dtype_bytes / bw
    assert cost.weight_read_time(512) - cost.weight_read_time(1) == pytest.approx(all_experts * 120 / 128, rel=1e-6)


def test_prefill_flops_come_from_the_active_params():
    # A 4k-token prefill is compute-bound: time ~ 2 x active params x tokens, ~3.6x below a dense 46.7B model.
    n = 4096
    cost = RooflineCostModel(MIXTRAL, H100, efficiency=NO_OVERHEAD)
    flops = H100.peak_bf16_flops * NO_OVERHEAD.flops_fraction
    embeddings = 2 * MIXTRAL.vocab_size * MIXTRAL.hidden_size
    matmuls = 2 * n * (MIXTRAL.active_params - embeddings) / flops
    assert matmuls < cost.linear_time(n) < 1.1 * matmuls  # + memory-bound element-wise ops


def test_tp_splits_every_expert_and_the_moe_model_pays_dense_all_reduces():
    one = make_cost_model("roofline", MIXTRAL, H100, 1, overhead_s=0.0)
    two = make_cost_model("roofline", MIXTRAL, H100, 2, overhead_s=0.0)
    assert two.linear_time(2048) == pytest.approx(one.linear_time(2048) / 2, rel=0.05)  # norms are replicated
    assert two.all_reduce_time(64) == make_cost_model("roofline", "Mistral-7B-v0.2", H100, 2).all_reduce_time(64)


def test_memory_holds_every_expert():
    # 93.4 GB of Mixtral weights do not fit one 80 GB card though a token uses 25.8 GB of them; two do.
    with pytest.raises(MemoryError, match="Mixtral-8x7B"):
        num_kv_blocks(MIXTRAL, H100, 1, MemoryConfig(), 16)
    assert num_kv_blocks(MIXTRAL, H100, 2, MemoryConfig(), 16) > 0


def test_dense_model_is_unchanged_by_the_moe_terms():
    llama = RooflineCostModel(model("Llama-2-7B"), H100, efficiency=NO_OVERHEAD)
    assert llama.experts_touched(100) == 1.0
    assert llama.weight_read_time(1) == llama.weight_read_time(512)


def test_alibi_model_has_no_rotary_op():
    # BLOOM-176B as it is, and as if it used RoPE: the rotary element-wise op is the only difference.
    bloom = model("BLOOM-176B")
    rope = dataclasses.replace(bloom, position_encoding="rope")
    a = RooflineCostModel(bloom, H100, 8, efficiency=NO_OVERHEAD)
    b = RooflineCostModel(rope, H100, 8, efficiency=NO_OVERHEAD)
    assert a.linear_time(1) < b.linear_time(1)
    q = kv = 112 * 128 // 8
    saved = bloom.num_layers * 2 * (q + kv) * 2 / (H100.hbm_bandwidth_Bps * NO_OVERHEAD.hbm_fraction)
    assert b.linear_time(100) - a.linear_time(100) == pytest.approx(100 * saved)


def test_profiled_refuses_a_moe_model_with_a_dense_models_layer_widths():
    # Mixtral's attention and expert widths equal Llama-3-8B's: its A100 profile must not be used.
    with pytest.raises(KeyError, match="no Vidur profile for Mixtral-8x7B"):
        make_cost_model("profiled", MIXTRAL, "A100-SXM-80GB", 2)
