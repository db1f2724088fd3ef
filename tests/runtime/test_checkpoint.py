"""Checkpoint folders: bit-exact save/load, sharded loading, refusals, and the shipped tiny model.

Refusals must name the offending tensor and the shape the config expects, in one ValueError.
"""
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from tessera.runtime.checkpoint import load_checkpoint, save_checkpoint
from tessera.runtime.config import ModelConfig
from tessera.runtime.model import Transformer
from tessera.runtime.tokenizer import load_tokenizer
from tessera.runtime.train.decode import greedy_generate

SHIPPED = Path(__file__).resolve().parents[2] / "models" / "tessera-tiny-byte"


def tiny_model(tied=False) -> Transformer:
    config = ModelConfig(vocab_size=50, hidden_size=16, intermediate_size=24, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=tied,
                         rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                       "high_freq_factor": 4.0, "original_max_position_embeddings": 64})
    model = Transformer(config)
    model.init_weights(seed=7)
    return model


@pytest.mark.parametrize("tied", [False, True])
def test_save_load_round_trip_is_bit_exact(tmp_path, tied):
    model = tiny_model(tied)
    save_checkpoint(model, tmp_path)
    loaded = load_checkpoint(tmp_path)
    assert loaded.config == model.config
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    tokens = torch.tensor([[1, 2, 3, 4, 5]])
    assert torch.equal(loaded(tokens), model.eval()(tokens))
    assert ("lm_head.weight" in load_file(tmp_path / "model.safetensors")) == (not tied)


def test_config_json_is_hf_llama_format(tmp_path):
    save_checkpoint(tiny_model(), tmp_path)
    hf = json.loads((tmp_path / "config.json").read_text())
    assert hf["architectures"] == ["LlamaForCausalLM"] and hf["model_type"] == "llama"
    assert hf["rope_scaling"]["rope_type"] == "llama3" and hf["torch_dtype"] == "float32"


def test_bf16_round_trip(tmp_path):
    model = tiny_model().to(torch.bfloat16)
    save_checkpoint(model, tmp_path)
    loaded = load_checkpoint(tmp_path)
    assert loaded.config.torch_dtype == "bfloat16"
    assert all(torch.equal(loaded.state_dict()[n], t) for n, t in model.state_dict().items())


def test_sharded_checkpoint_loads(tmp_path):
    model = tiny_model()
    save_checkpoint(model, tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    (tmp_path / "model.safetensors").unlink()
    names = sorted(state)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for file, shard_names in shards.items():
        save_file({n: state[n] for n in shard_names}, tmp_path / file)
    weight_map = {n: f for f, shard_names in shards.items() for n in shard_names}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    loaded = load_checkpoint(tmp_path)
    assert all(torch.equal(loaded.state_dict()[n], t) for n, t in model.state_dict().items())


def _rewrite_weights(folder: Path, edit) -> None:
    state = load_file(folder / "model.safetensors")
    edit(state)
    save_file(state, folder / "model.safetensors")


def test_missing_tensor_is_refused_with_name_and_shape(tmp_path):
    save_checkpoint(tiny_model(), tmp_path)
    _rewrite_weights(tmp_path, lambda s: s.pop("model.layers.1.mlp.up_proj.weight"))
    with pytest.raises(ValueError, match=r"missing tensor model\.layers\.1\.mlp\.up_proj\.weight "
                                         r"\(expected shape \[24, 16\]\)"):
        load_checkpoint(tmp_path)


def test_misshaped_and_unexpected_tensors_are_listed_together(tmp_path):
    save_checkpoint(tiny_model(), tmp_path)

    def edit(state):
        state["model.layers.0.self_attn.k_proj.weight"] = torch.zeros(16, 16)
        state["model.layers.0.self_attn.qkv_proj.weight"] = torch.zeros(32, 16)

    _rewrite_weights(tmp_path, edit)
    with pytest.raises(ValueError) as err:
        load_checkpoint(tmp_path)
    message = str(err.value)
    assert "model.layers.0.self_attn.k_proj.weight has shape [16, 16], expected shape [8, 16]" in message
    assert "unexpected tensor model.layers.0.self_attn.qkv_proj.weight" in message


def test_pickle_weights_are_refused(tmp_path):
    tiny_model().config.to_json(tmp_path / "config.json")
    (tmp_path / "pytorch_model.bin").write_bytes(b"not opened")
    with pytest.raises(ValueError, match="convert them to safetensors|Convert them to safetensors"):
        load_checkpoint(tmp_path)


def test_unsupported_architecture_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"]}))
    with pytest.raises(ValueError, match="GPT2LMHeadModel.*loads LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM"):
        load_checkpoint(tmp_path)


EASY_PAIRS = ["kqz=4831", "mfa=0927", "tpo=5560", "bxr=7214", "wgd=3389", "hle=6045",
              "cuv=1172", "ysn=8806", "dij=2651", "ora=9430", "jnt=5098", "evx=3317"]
EASY_LOOKUP = "Dictionary:\n" + "\n".join(EASY_PAIRS) + "\nLookups:\nwgd="  # about 130 bytes


def test_shipped_model_loads_and_greedy_continuation_is_deterministic():
    model = load_checkpoint(SHIPPED)
    tok = load_tokenizer(SHIPPED)
    assert model.config.num_key_value_heads == 2 and model.config.num_queries_per_kv == 2
    ids = tok.encode(EASY_LOOKUP)  # <bos> first, as the model was trained
    first = greedy_generate(model, ids, 12)
    assert greedy_generate(model, ids, 12) == first
    assert torch.equal(model(torch.tensor([ids])), model(torch.tensor([ids])))


@pytest.mark.xfail(reason="the shipped model finds which needle a key names (first digit) but does not "
                          "look up a dense dictionary: 1 of these 12 keys right (MODEL_CARD.md, 'Retrieval'); "
                          "passes once a model that looks up keys is shipped", strict=True)
def test_shipped_model_solves_an_easy_lookup():
    """Every key of a 12-pair lookup of about 130 bytes, far shorter than the 2k training context; 10 of
    12 must come back exactly (one key right can be luck: the model answers 3389 or 3317 for most)."""
    model = load_checkpoint(SHIPPED)
    tok = load_tokenizer(SHIPPED)
    dictionary = EASY_LOOKUP.split("Lookups:\n")[0] + "Lookups:\n"
    right = 0
    for pair in EASY_PAIRS:
        key, value = pair.split("=")
        right += tok.decode(greedy_generate(model, tok.encode(f"{dictionary}{key}="), 4)) == value
    assert right >= 10


def test_shipped_model_finds_which_multikey_needle_is_asked():
    """Four key=value notes hidden in held-out stdlib text (1k bytes), one key asked: the first answer
    digit needs the right note (chance 0.1; measured 23 of 24 at 1k, 19 of 24 at 8k)."""
    from tessera.runtime.train.corpus import load_split
    from tessera.runtime.train.evaluate import eval_examples

    model = load_checkpoint(SHIPPED)
    tok = load_tokenizer(SHIPPED)
    found = 0
    for ex in eval_examples("multikey", 1024, 8, load_split("heldout")):
        found += tok.decode(greedy_generate(model, [tok.bos_id] + ex.prompt_for(0), 1)) == ex.answers[0][0]
    assert found >= 6


LLAMA_31_8B_CONFIG = {  # the fields of meta-llama/Llama-3.1-8B-Instruct's config.json that matter
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
    "attention_bias": False, "mlp_bias": False, "hidden_size": 4096, "intermediate_size": 14336,
    "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
    "rms_norm_eps": 1e-05, "rope_theta": 500000.0, "max_position_embeddings": 131072,
    "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "vocab_size": 128256, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
    "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "pretraining_tp": 1,
}


def test_llama_31_8b_config_gives_the_hf_tensor_shapes():
    config = ModelConfig.from_hf_dict(LLAMA_31_8B_CONFIG)
    assert config.rope_scaling.factor == 8.0 and config.num_queries_per_kv == 4
    with torch.device("meta"):
        shapes = {n: tuple(t.shape) for n, t in Transformer(config).state_dict().items()}
    assert len(shapes) == 32 * 9 + 3
    assert shapes["model.layers.31.self_attn.k_proj.weight"] == (1024, 4096)
    assert shapes["model.layers.0.mlp.gate_proj.weight"] == (14336, 4096)
    assert shapes["lm_head.weight"] == (128256, 4096)
