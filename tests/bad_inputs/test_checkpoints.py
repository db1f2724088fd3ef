"""Bad checkpoint folders are refused by load_checkpoint with a CheckpointError naming the file and the key.
"""
import json
import shutil

import pytest

from tessera.runtime.checkpoint import load_checkpoint
from tessera.runtime.errors import CheckpointError
from tests.bad_inputs.corpus import refused

WEIGHTS = "model.safetensors"


@pytest.fixture(scope="module")
def good(tiny_folder):
    return tiny_folder


def config_with(**changes):
    def change(folder):
        hf = json.loads((folder / "config.json").read_text())
        hf.update(changes)
        (folder / "config.json").write_text(json.dumps(hf))
    return change


def write(name, data):
    def change(folder):
        path = folder / name
        path.write_bytes(data) if isinstance(data, bytes) else path.write_text(data)
    return change


def delete(name):
    return lambda folder: (folder / name).unlink()


def truncate(folder):
    data = (folder / WEIGHTS).read_bytes()
    (folder / WEIGHTS).write_bytes(data[: len(data) // 2])



# (id, change to a good folder, needles besides the folder path)
FOLDERS = [
    ("no-config", delete("config.json"), ["config.json does not exist"]),
    ("config-empty-file", write("config.json", ""), ["config.json is not valid JSON"]),
    ("config-invalid-json", write("config.json", '{"vocab_size": 64,'), ["config.json is not valid JSON"]),
    ("config-is-a-list", write("config.json", "[1, 2]"), ["JSON list"]),
    ("config-unknown-key", config_with(foo_bar=1), ["foo_bar not understood"]),
    ("config-model-changing-key", config_with(hidden_act="gelu"), ["hidden_act='gelu'"]),
    ("config-quantized", config_with(quantization_config={"quant_method": "gptq"}), ["quantized"]),
    ("config-heads-not-grouped", config_with(num_attention_heads=5), ["num_attention_heads=5"]),
    ("config-architecture", config_with(architectures=["GemmaForCausalLM"]), ["GemmaForCausalLM"]),
    ("config-rope-unknown", config_with(rope_scaling={"rope_type": "longrope", "short_factor": [1.0],
                                                      "long_factor": [1.0]}), ["longrope"]),
    ("config-dtype", config_with(torch_dtype="int8"), ["int8"]),
    ("weights-truncated", truncate, ["model.safetensors is not a readable safetensors file"]),
    ("weights-garbage", write(WEIGHTS, b"\x00" * 64), ["not a readable safetensors file"]),
    ("weights-text", write(WEIGHTS, "hello"), ["not a readable safetensors file"]),
    ("weights-missing", delete(WEIGHTS), ["no *.safetensors weights"]),
    ("index-missing-shard", write("model.safetensors.index.json", json.dumps(
        {"weight_map": {"model.norm.weight": "model-00001-of-00002.safetensors"}})), ["model-00001-of-00002"]),
    ("index-not-an-index", write("model.safetensors.index.json", "[]"), ["not a valid safetensors index"]),
    ("index-invalid-json", write("model.safetensors.index.json", "{"), ["model.safetensors.index.json"]),
    ("config-layers-mismatch", config_with(num_hidden_layers=1), ["does not match its config.json"]),
    ("config-hidden-mismatch", config_with(hidden_size=128, head_dim=16), ["does not match its config.json"]),
    pytest.param("config-hidden-string", config_with(hidden_size="64"), ["hidden_size"]),
    pytest.param("config-hidden-float", config_with(hidden_size=64.5), ["hidden_size"]),
    pytest.param("config-vocab-negative", config_with(vocab_size=-5), ["vocab_size"]),
    pytest.param("config-eps-nan", config_with(rms_norm_eps=float("nan")),
                 ["rms_norm_eps"]),
    pytest.param("config-context-zero", config_with(max_position_embeddings=0), ["max_position_embeddings"]),
    pytest.param("config-rope-theta-negative", config_with(rope_theta=-1), ["rope_theta"]),
]


def _id(case):
    return case.values[0] if hasattr(case, "values") else case[0]


@pytest.mark.parametrize("name, change, needles", FOLDERS, ids=[_id(c) for c in FOLDERS])
def test_bad_checkpoint_is_a_checkpoint_error_naming_the_file(good, tmp_path, name, change, needles):
    folder = tmp_path / "ckpt"
    shutil.copytree(good, folder)
    change(folder)
    refused(CheckpointError, lambda: load_checkpoint(folder), str(folder), *needles)


def test_missing_folder(tmp_path):
    refused(CheckpointError, lambda: load_checkpoint(tmp_path / "nowhere"), "nowhere", "config.json")


CASES = [_id(c) for c in FOLDERS] + ["missing-folder"]
