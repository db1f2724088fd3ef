"""GGUF -> HF folder conversion, with transformers as the oracle.

Tiny GGUFs written by gguf's own writer (q/k rows permuted as llama.cpp does, every quant type gguf can
write plus hand-built K-quant blocks) convert to folders whose Tessera logits equal transformers' logits
for the same GGUF (gguf_file=) and for the converted folder, fp32, within 1e-5.
"""
import json

import numpy as np
import pytest
import torch
from safetensors import safe_open

from tessera.runtime.checkpoint import load_checkpoint
from tessera.runtime.convert import convert_gguf
from tessera.runtime.convert.rope import llama3_factors
from tests.runtime.convert.tiny_gguf import MIXED_TYPES, Q, TinySpec, hf_weights, vocabulary, write_tiny_gguf

pytest.importorskip("transformers", reason="transformers (the dev extra) is the oracle")
pytest.importorskip("accelerate", reason="transformers loads a GGUF (gguf_file=) only with accelerate installed")

ATOL = 1e-5


def tokens(n=48, seed=0):
    return torch.randint(3, len(vocabulary()[0]), (1, n), generator=torch.Generator().manual_seed(seed))


def hf_gguf_logits(gguf_path, ids):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    with torch.no_grad():
        return model.eval()(ids).logits.float()


def hf_folder_logits(folder, ids):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    with torch.no_grad():
        return model.eval()(ids).logits.float()


def tessera_logits(folder, ids, dtype=None):
    model = load_checkpoint(folder, dtype=dtype) if dtype else load_checkpoint(folder)
    with torch.no_grad():
        return model(ids).float()


def convert(tmp_path, spec, **kwargs):
    gguf_path = write_tiny_gguf(tmp_path / "tiny.gguf", spec)
    out = tmp_path / "hf"
    result = convert_gguf(gguf_path, out, progress=False, **kwargs)
    return gguf_path, out, result


@pytest.mark.parametrize("tied,types", [
    (False, MIXED_TYPES),
    (True, {"token_embd": Q.Q4_0, "blk.0.ffn_down": Q.Q5_K, "blk.1.ffn_down": Q.Q3_K, "blk.0.attn_q": Q.Q5_1,
            "blk.1.attn_k": Q.Q4_1}),
    (False, {"output": Q.Q8_0, "blk.0.ffn_down": Q.Q2_K, "blk.1.attn_q": Q.BF16}),
], ids=["untied-mixed", "tied-k-quants", "q2k"])
def test_logits_equal_transformers(tmp_path, tied, types):
    gguf_path, out, result = convert(tmp_path, TinySpec(tied=tied, types=types))
    ids = tokens()
    ours = tessera_logits(out, ids)
    assert ours.shape == (1, ids.shape[1], len(vocabulary()[0]))
    torch.testing.assert_close(ours, hf_gguf_logits(gguf_path, ids), rtol=0, atol=ATOL)
    torch.testing.assert_close(ours, hf_folder_logits(out, ids), rtol=0, atol=ATOL)
    assert (ours.argmax(-1) == hf_gguf_logits(gguf_path, ids).argmax(-1)).all()
    assert result.config["tie_word_embeddings"] is tied


def test_rope_permutation_is_undone_exactly(tmp_path):
    """F32 q/k tensors come back bit-identical to the HF weights llama.cpp permuted before writing."""
    spec = TinySpec(types=MIXED_TYPES)  # blk.0.attn_q and blk.1.attn_k are F32
    _, out, _ = convert(tmp_path, spec)
    original = hf_weights(spec)
    with safe_open(str(out / "model.safetensors"), framework="pt") as f:
        assert np.array_equal(f.get_tensor("model.layers.0.self_attn.q_proj.weight").numpy(), original["blk.0.attn_q"])
        assert np.array_equal(f.get_tensor("model.layers.1.self_attn.k_proj.weight").numpy(), original["blk.1.attn_k"])
        # a quantized q stays within its quantization error of the original, in the original row order
        q8 = f.get_tensor("model.layers.1.self_attn.q_proj.weight").numpy()
        assert np.abs(q8 - original["blk.1.attn_q"]).max() < 0.02
        assert "lm_head.weight" in f.keys()


def test_config_json_is_old_hf_layout(tmp_path):
    _, out, _ = convert(tmp_path, TinySpec())
    config = json.loads((out / "config.json").read_text())
    assert config == {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": len(vocabulary()[0]),
        "hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "head_dim": 16, "rms_norm_eps": 1e-05, "rope_theta": 10000.0,
        "rope_scaling": None, "max_position_embeddings": 256, "tie_word_embeddings": False,
        "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2, "torch_dtype": "float32",
        "hidden_act": "silu", "attention_bias": False, "mlp_bias": False,
    }
    record = json.loads((out / "conversion.json").read_text())
    assert record["source"]["file"] == "tiny.gguf" and len(record["source"]["sha256"]) == 64
    assert record["gguf"]["name"] == "tessera tiny test" and record["gguf"]["license"] == "apache-2.0"
    assert record["gguf"]["quant_types"] == {"F32": 2 * 9 + 3}  # 2 layers of 9, embeddings, output, norm
    assert record["dtype"] == "float32" and record["converter_version"] >= 1
    assert set(record["files"]) == {p.name for p in out.iterdir()}


def test_bfloat16_output(tmp_path):
    gguf_path, out, _ = convert(tmp_path, TinySpec(types=MIXED_TYPES), dtype="bfloat16")
    assert json.loads((out / "config.json").read_text())["torch_dtype"] == "bfloat16"
    with safe_open(str(out / "model.safetensors"), framework="pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"BF16"}
    ids = tokens()
    ours = tessera_logits(out, ids, dtype=torch.float32)  # bf16-rounded weights, fp32 compute
    reference = hf_gguf_logits(gguf_path, ids)
    assert (ours - reference).abs().max() < 0.05 * reference.abs().max()


def test_sharded_output_matches_single_file(tmp_path):
    gguf_path, single, _ = convert(tmp_path, TinySpec(types=MIXED_TYPES))
    sharded = tmp_path / "sharded"
    convert_gguf(gguf_path, sharded, max_shard_size="100KB", progress=False)
    index = json.loads((sharded / "model.safetensors.index.json").read_text())
    shards = sorted(p.name for p in sharded.glob("*.safetensors"))
    assert len(shards) > 2 and sorted(set(index["weight_map"].values())) == shards
    assert shards[0] == f"model-00001-of-{len(shards):05d}.safetensors"
    assert index["metadata"]["total_size"] == sum(
        4 * np.prod(s) for s in _shapes(single).values())
    for p in sharded.glob("*.safetensors"):
        assert p.stat().st_size <= 100_000 + 1024 or len(_shapes_of(p)) == 1  # header slack; one big tensor
    ids = tokens()
    torch.testing.assert_close(tessera_logits(sharded, ids), tessera_logits(single, ids), rtol=0, atol=0)


def test_llama3_rope_freqs_become_rope_scaling(tmp_path):
    """llama.cpp stores Llama-3.1 scaling only as per-frequency factors (rope_freqs.weight)."""
    # theta 500000: the standard Llama-3 values (original 8192, low 1, high 4) reproduce the factors
    standard = {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
    spec = TinySpec(rope_theta=500000.0, rope_freqs=llama3_factors(standard, 500000.0, 16), context=65536)
    _, out, result = convert(tmp_path, spec)
    assert result.config["rope_scaling"] == {"rope_type": "llama3", **standard}
    ids = tokens()
    # transformers' GGUF loader ignores rope_freqs (unscaled RoPE), so the oracle is the converted folder
    torch.testing.assert_close(tessera_logits(out, ids), hf_folder_logits(out, ids), rtol=0, atol=ATOL)
    # non-standard values are recovered from the blended band (low_freq_factor normalised to 1)
    custom = {"factor": 16.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 64}
    spec = TinySpec(rope_freqs=llama3_factors(custom, 10000.0, 16), context=1024)
    (tmp_path / "custom").mkdir()
    _, _, result = convert(tmp_path / "custom", spec)
    assert result.config["rope_scaling"] == {"rope_type": "llama3", **custom}


@pytest.mark.parametrize("metadata,expected", [
    ({"{arch}.rope.scaling.type": "linear", "{arch}.rope.scaling.factor": 4.0}, {"rope_type": "linear", "factor": 4.0}),
    ({"{arch}.rope.scaling.type": "yarn", "{arch}.rope.scaling.factor": 4.0,
      "{arch}.rope.scaling.original_context_length": 64},
     {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64}),
    ({"{arch}.rope.scaling.type": "none"}, None),
])
def test_rope_scaling_metadata(tmp_path, metadata, expected):
    gguf_path, out, result = convert(tmp_path, TinySpec(metadata=metadata))
    assert result.config["rope_scaling"] == expected
    if expected is not None:  # transformers reads the HF rope_scaling of the converted folder
        ids = tokens()
        torch.testing.assert_close(tessera_logits(out, ids), hf_folder_logits(out, ids), rtol=0, atol=ATOL)


def test_force_replaces_only_converted_files(tmp_path):
    gguf_path, out, _ = convert(tmp_path, TinySpec())
    (out / "NOTES.md").write_text("mine")
    (out / "model-00001-of-00009.safetensors").write_text("stale shard")
    convert_gguf(gguf_path, out, force=True, progress=False)
    assert (out / "NOTES.md").read_text() == "mine"
    assert not (out / "model-00001-of-00009.safetensors").exists()
    assert not list(tmp_path.glob(".*partial*"))


def _shapes(folder):
    return {k: v for p in folder.glob("*.safetensors") for k, v in _shapes_of(p).items()}


def _shapes_of(path):
    with safe_open(str(path), framework="pt") as f:
        return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
