"""Model catalog: every shape agrees with its published parameter count; lookups and errors."""
import pytest

from tessera.models import (MODELS, SYMBOLIC_MOE_AGGREGATORS, SYMBOLIC_MOE_POOL, list_models, model,
                            shape_active_param_count, shape_param_count, symbolic_moe_pool)
from tessera.types import ModelSpec

REQUIRED = ["Llama-2-7B", "Llama-2-70B", "Llama-3.1-8B", "Llama-3-8B", "Llama-3-70B", "Mistral-7B-v0.2",
            "Qwen2.5-7B", "Qwen2.5-32B", "DeepSeek-R1-Distill-Qwen-7B", "DeepSeek-R1-Distill-Llama-8B",
            "BLOOM-176B", "Mixtral-8x7B", "Qwen3-30B-A3B"]


def test_catalog_has_the_required_models_and_the_16_expert_pool():
    assert set(REQUIRED) <= set(list_models())
    pool = symbolic_moe_pool()
    assert len(pool) == 16 and len({m.name for m in pool}) == 16
    assert set(SYMBOLIC_MOE_AGGREGATORS.values()) <= set(SYMBOLIC_MOE_POOL.values())
    assert "EXAONE-3.5-7.8B-Instruct" in SYMBOLIC_MOE_AGGREGATORS.values()


@pytest.mark.parametrize("name", list(MODELS))
def test_shape_matches_published_parameter_count(name):
    spec = MODELS[name]
    assert shape_param_count(spec) == pytest.approx(spec.num_params, rel=0.02)


@pytest.mark.parametrize("name", list(MODELS))
def test_heads_group_evenly(name):
    spec = MODELS[name]
    assert spec.num_heads % spec.num_kv_heads == 0
    # BLOOM (ALiBi) was trained at 2,048 tokens; every other catalog model at >= 4,096.
    assert spec.num_layers > 0 and spec.vocab_size > 0 and spec.max_position >= 2048


def test_kv_bytes_per_token_of_llama_3_1_8b_is_128_kib():
    assert model("Llama-3.1-8B").kv_bytes_per_token == 128 * 1024


def test_lookup_by_short_name_or_hf_id_case_insensitive():
    assert model("qwen2.5-7b") is MODELS["Qwen2.5-7B"]
    assert model("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B").name == "DeepSeek-R1-Distill-Qwen-7B"
    assert model("meta-llama/Meta-Llama-3.1-8B-Instruct").name == "Llama-3.1-8B-Instruct"


def test_unknown_name_suggests_close_matches():
    with pytest.raises(KeyError, match="did you mean 'Llama-3.1-8B'"):
        model("Llama-3.1-8")
    with pytest.raises(KeyError, match="known models"):
        model("GPT-5")


@pytest.mark.parametrize("name", list(MODELS))
def test_shape_matches_published_active_parameter_count(name):
    spec = MODELS[name]
    assert shape_active_param_count(spec) == pytest.approx(spec.active_params, rel=0.02)


def test_moe_models_hold_every_expert_but_run_only_the_routed_ones():
    mixtral, qwen3 = model("Mixtral-8x7B"), model("Qwen3-30B-A3B")
    assert (mixtral.num_experts, mixtral.experts_per_token) == (8, 2)
    assert (qwen3.num_experts, qwen3.experts_per_token) == (128, 8)
    assert mixtral.weight_bytes == pytest.approx(2 * 46.7e9)  # all experts in memory
    assert mixtral.active_params / mixtral.num_params == pytest.approx(12.9 / 46.7)
    assert qwen3.active_params < 0.12 * qwen3.num_params
    assert not model("Llama-2-7B").is_moe and model("Llama-2-7B").active_params == model("Llama-2-7B").num_params


def test_bloom_is_multi_head_alibi_with_a_gelu_mlp():
    bloom = model("bigscience/bloom")
    assert bloom.num_kv_heads == bloom.num_heads == 112
    assert bloom.position_encoding == "alibi" and not bloom.gated_mlp
    assert bloom.max_position == 2048


def test_bad_moe_or_position_fields_are_refused():
    shape = dict(name="x", hf_id="x", num_layers=2, hidden_size=64, num_heads=4, num_kv_heads=4, head_dim=16,
                 intermediate_size=128, vocab_size=100, num_params=1e6)
    with pytest.raises(ValueError, match="experts_per_token=3"):
        ModelSpec(**shape, num_experts=2, experts_per_token=3)
    with pytest.raises(ValueError, match="position_encoding='learned'"):
        ModelSpec(**shape, position_encoding="learned")
