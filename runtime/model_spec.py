"""The simulator's view of a checkpoint folder: its ModelSpec from config.json, without torch or the weights.

Parameter count from the architecture (every matrix, bias and norm); bytes per value from the config's
dtype, else from the first safetensors header (read as JSON, no tensor is touched).
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

from tessera.runtime.config import ModelConfig
from tessera.types import ModelSpec

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2, "F32": 4, "BF16": 2, "F16": 2}


def count_params(c: ModelConfig) -> int:
    """Parameters of the model ModelConfig describes (Transformer.num_params without building it)."""
    C, D, F = c.hidden_size, c.head_dim, c.intermediate_size
    q, kv = c.num_attention_heads * D, c.num_key_value_heads * D
    attention = C * q + 2 * C * kv + q * C + (q + 2 * kv if c.qkv_bias else 0) + (C if c.o_proj_bias else 0)
    mlp = 3 * C * F + (2 * F + C if c.mlp_bias else 0)
    per_layer = attention + mlp + 2 * C  # + two RMSNorm weights
    embeddings = c.vocab_size * C * (1 if c.tie_word_embeddings else 2)
    return c.num_hidden_layers * per_layer + embeddings + C


def model_spec_from_folder(folder: str | Path, name: str) -> ModelSpec:
    """ModelSpec of a checkpoint folder (e.g. for the simulator to model a local checkpoint)."""
    folder = Path(folder)
    c = ModelConfig.from_json(folder / "config.json")
    dtype_bytes = DTYPE_BYTES[c.torch_dtype] if c.torch_dtype else _stored_dtype_bytes(folder)
    return ModelSpec(name=name, hf_id=name, num_layers=c.num_hidden_layers, hidden_size=c.hidden_size,
                     num_heads=c.num_attention_heads, num_kv_heads=c.num_key_value_heads, head_dim=c.head_dim,
                     intermediate_size=c.intermediate_size, vocab_size=c.vocab_size,
                     num_params=float(count_params(c)), dtype_bytes=dtype_bytes,
                     max_position=c.max_position_embeddings)


def _stored_dtype_bytes(folder: Path) -> int:
    for path in sorted(folder.glob("*.safetensors")):
        with path.open("rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
        for entry in header.values():
            if isinstance(entry, dict) and entry.get("dtype") in DTYPE_BYTES:
                return DTYPE_BYTES[entry["dtype"]]
    return 4
