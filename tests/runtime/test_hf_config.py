"""Strict config.json reading and checkpoint-file refusals: every refusal names the file and the key,
tensor or shard at fault; nothing that changes the model is guessed or silently dropped."""
import json

import pytest
import torch

from tessera.runtime.checkpoint import load_checkpoint, save_checkpoint
from tessera.runtime.config import ModelConfig
from tessera.runtime.engine import Engine, EngineConfig
from tessera.runtime.errors import CheckpointError
from tessera.runtime.model import Transformer
from tessera.runtime.sequence import SamplingParams

BASE = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 64, "hidden_size": 64,
        "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "max_position_embeddings": 128, "rms_norm_eps": 1e-6, "rope_theta": 10000.0}


def write(folder, **changes):
    hf = {**BASE, **changes}
    hf = {k: v for k, v in hf.items() if v is not ...}
    (folder / "config.json").write_text(json.dumps(hf))
    return folder / "config.json"


@pytest.mark.parametrize("key", ["vocab_size", "num_attention_heads", "rms_norm_eps", "max_position_embeddings"])
def test_a_missing_required_key_is_named_not_defaulted(tmp_path, key):
    path = write(tmp_path, **{key: ...})
    with pytest.raises(CheckpointError, match=f"lacks required key.*{key}") as err:
        ModelConfig.from_json(path)
    assert str(path) in str(err.value)


def test_absent_optional_keys_take_transformers_defaults(tmp_path):
    config = ModelConfig.from_json(write(tmp_path, num_key_value_heads=..., rope_theta=...))
    assert config.num_key_value_heads == 4 and config.rope_theta == 10000.0  # LlamaConfig's rules
    assert config.torch_dtype is None  # then the stored tensors' dtype, as transformers' dtype="auto"


@pytest.mark.parametrize("changes, match", [
    ({"attn_logit_softcapping": 50.0}, "attn_logit_softcapping not understood"),
    ({"sliding_window": 16}, "sliding_window not understood"),  # Llama has no sliding window
    ({"quantization_config": {"quant_method": "gptq"}}, "quantized checkpoints"),
    ({"hidden_act": "gelu"}, "hidden_act='gelu' changes the model"),
    ({"use_mrope": True}, "use_mrope=True"),
    ({"rope_scaling": {"rope_type": "longrope", "short_factor": [1.0], "long_factor": [1.0]}},
     "rope_type 'longrope' is not supported"),
    ({"rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                       "beta": 3}}, r"not understood \['beta'\]"),
    ({"rope_scaling": {"rope_type": "linear"}}, r"missing \['factor'\]"),
    ({"rope_parameters": {"rope_type": "default", "rope_theta": 1e4}, "rope_scaling": {"type": "linear", "factor": 2.0}},
     "both rope_parameters"),
    ({"torch_dtype": "float32", "dtype": "bfloat16"}, "disagree"),
    ({"dtype": "int8"}, "dtype 'int8' is not supported"),
    ({"architectures": ["MistralForCausalLM"]}, "model_type='llama' does not match"),
    ({"num_key_value_heads": 3}, "must be a multiple of"),
])
def test_keys_that_change_the_model_are_refused_by_name(tmp_path, changes, match):
    path = write(tmp_path, **changes)
    with pytest.raises(CheckpointError, match=match) as err:
        ModelConfig.from_json(path)
    assert str(path) in str(err.value)


def test_inert_keys_are_accepted(tmp_path):
    config = ModelConfig.from_json(write(tmp_path, initializer_range=0.02, use_cache=True, pretraining_tp=1,
                                         transformers_version="4.45.0", attention_dropout=0.0, temperature=0.7))
    assert config.hidden_size == 64


@pytest.mark.parametrize("arch, config_cls", [("Gemma", "GemmaConfig"), ("Phi", "PhiConfig"),
                                              ("Mixtral", "MixtralConfig"), ("Qwen2Moe", "Qwen2MoeConfig")])
def test_unsupported_architectures_saved_by_transformers_are_refused(tmp_path, arch, config_cls):
    transformers = pytest.importorskip("transformers")
    config = getattr(transformers, config_cls)(vocab_size=64, hidden_size=32, intermediate_size=64,
                                               num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2)
    config.architectures = [f"{arch}ForCausalLM"]
    config.save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match=f"{arch}ForCausalLM.*loads LlamaForCausalLM, MistralForCausalLM, "
                                              "Qwen2ForCausalLM checkpoints only"):
        load_checkpoint(tmp_path)


def test_invalid_json_names_the_file(tmp_path):
    (tmp_path / "config.json").write_text('{"vocab_size": 64,')
    with pytest.raises(CheckpointError, match=f"{tmp_path / 'config.json'} is not valid JSON"):
        load_checkpoint(tmp_path)


def tiny(tmp_path):
    model = Transformer(ModelConfig(**{k: v for k, v in BASE.items() if k not in ("architectures", "model_type")}))
    model.init_weights(seed=0)
    save_checkpoint(model, tmp_path)
    return model


def test_truncated_and_garbage_safetensors_are_refused(tmp_path):
    tiny(tmp_path)
    weights = tmp_path / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="model.safetensors is not a readable safetensors file"):
        load_checkpoint(tmp_path)
    weights.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_checkpoint(tmp_path)


def test_missing_shard_bad_index_and_no_weights_are_refused(tmp_path):
    tiny(tmp_path)
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"model.norm.weight": "model-00001-of-00002.safetensors"}}))
    with pytest.raises(CheckpointError, match="names shard.*model-00001-of-00002.safetensors.*not in"):
        load_checkpoint(tmp_path)
    (tmp_path / "model.safetensors.index.json").write_text("[]")
    with pytest.raises(CheckpointError, match="not a valid safetensors index"):
        load_checkpoint(tmp_path)
    (tmp_path / "model.safetensors.index.json").unlink()
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no \\*.safetensors weights"):
        load_checkpoint(tmp_path)


def test_dtype_defaults_to_the_stored_tensors(tmp_path):
    model = tiny(tmp_path).to(torch.bfloat16)
    save_checkpoint(model, tmp_path)
    hf = json.loads((tmp_path / "config.json").read_text())
    del hf["torch_dtype"]
    (tmp_path / "config.json").write_text(json.dumps(hf))
    assert load_checkpoint(tmp_path).model.embed_tokens.weight.dtype == torch.bfloat16


def test_engine_refuses_requests_the_model_cannot_compute(tmp_path):
    tiny(tmp_path)
    engine = Engine.from_checkpoint(tmp_path, EngineConfig(num_device_blocks=64), device="cpu")
    with pytest.raises(ValueError, match="prompt is empty"):
        engine.add_request([])
    with pytest.raises(ValueError, match=r"outside the vocabulary \[0, 64\)"):
        engine.add_request([1, 64])
    with pytest.raises(ValueError, match=r"outside the vocabulary"):
        engine.add_request([-1])
    with pytest.raises(ValueError, match="max_position_embeddings=128"):
        engine.add_request([1] * 120, SamplingParams(max_tokens=9))
    engine.add_request([1] * 120, SamplingParams(max_tokens=8))  # exactly the context length


def test_sparse_kv_policies_refuse_a_sliding_window_model(tmp_path):
    tiny(tmp_path)
    write(tmp_path, architectures=["MistralForCausalLM"], model_type="mistral", sliding_window=32)
    with pytest.raises(ValueError, match="sliding window of 32 tokens, which only kvpolicy=full supports"):
        Engine.from_checkpoint(tmp_path, EngineConfig(num_device_blocks=64, kvpolicy="quest"), device="cpu")
