"""Model catalog: every shape agrees with its published parameter count; lookups and errors."""
import pytest

from tessera.models import (MODELS, SYMBOLIC_MOE_AGGREGATORS, SYMBOLIC_MOE_POOL, list_models, model,
                            shape_param_count, symbolic_moe_pool)

REQUIRED = ["Llama-2-7B", "Llama-2-70B", "Llama-3.1-8B", "Llama-3-8B", "Llama-3-70B", "Mistral-7B-v0.2",
            "Qwen2.5-7B", "Qwen2.5-32B", "DeepSeek-R1-Distill-Qwen-7B", "DeepSeek-R1-Distill-Llama-8B"]


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
    assert spec.num_layers > 0 and spec.vocab_size > 0 and spec.max_position >= 4096


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
