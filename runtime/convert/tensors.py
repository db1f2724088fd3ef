"""GGUF tensors as HF Llama tensors: names mapped, dequantized, llama.cpp's q/k row permutation undone.

One tensor at a time, so a conversion holds at most one dequantized tensor (plus the shard being written).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np
import torch

from tessera.runtime.convert.errors import ConversionError

GLOBAL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
LAYER_NAMES = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
# folded into config.json's rope_scaling (see rope.py), not a weight
CONFIG_TENSORS = ("rope_freqs.weight",)
LAYER_PATTERN = re.compile(r"blk\.(\d+)\.(\w+)\.weight")


@dataclass
class TensorPlan:
    """One GGUF tensor and the HF tensor it becomes."""

    index: int  # position in reader.tensors
    gguf_name: str
    hf_name: str
    shape: tuple[int, ...]  # HF layout, [out, in] for matrices
    quant_type: str  # GGML type name, e.g. "Q4_1"
    permute_heads: int | None = None  # undo llama.cpp's RoPE row permutation with this many heads


def hf_name(gguf_name: str, num_layers: int, path: Path) -> str | None:
    """The HF name of a GGUF tensor; None for tensors folded into the config; unknown names refused."""
    if gguf_name in CONFIG_TENSORS:
        return None
    if gguf_name in GLOBAL_NAMES:
        return GLOBAL_NAMES[gguf_name]
    m = LAYER_PATTERN.fullmatch(gguf_name)
    if m and m.group(2) in LAYER_NAMES and int(m.group(1)) < num_layers:
        return f"model.layers.{m.group(1)}.{LAYER_NAMES[m.group(2)]}.weight"
    raise ConversionError(
        f"{path}: tensor {gguf_name!r} is not part of a dense Llama with {num_layers} layers; tessera-convert "
        "knows token_embd, output_norm, output, rope_freqs and blk.N.{" + ",".join(LAYER_NAMES) + "}.weight"
    )


def plan_tensors(reader: gguf.GGUFReader, config: dict, path: Path) -> list[TensorPlan]:
    """Map every tensor, check it against the config, and refuse missing or mis-shaped ones."""
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    plans = []
    for index, tensor in enumerate(reader.tensors):
        name = hf_name(tensor.name, config["num_hidden_layers"], path)
        if name is None:
            continue
        permute = heads if ".attn_q." in tensor.name else kv_heads if ".attn_k." in tensor.name else None
        shape = tuple(int(d) for d in reversed(tensor.shape.tolist()))
        plans.append(TensorPlan(index, tensor.name, name, shape, tensor.tensor_type.name, permute))
    _check_shapes(plans, expected_shapes(config), path)
    probed = set()
    for tensor in reader.tensors:  # refuse an unsupported type now, not after converting half the model
        if tensor.tensor_type not in probed:
            _dequantize(tensor.data.reshape(-1, tensor.data.shape[-1])[:1], tensor, path)
            probed.add(tensor.tensor_type)
    return plans


def expected_shapes(config: dict) -> dict[str, tuple[int, ...]]:
    C, D = config["hidden_size"], config["head_dim"]
    F, V = config["intermediate_size"], config["vocab_size"]
    q, kv = config["num_attention_heads"] * D, config["num_key_value_heads"] * D
    shapes = {"model.embed_tokens.weight": (V, C), "model.norm.weight": (C,)}
    if not config["tie_word_embeddings"]:
        shapes["lm_head.weight"] = (V, C)
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        shapes.update({
            p + "input_layernorm.weight": (C,), p + "post_attention_layernorm.weight": (C,),
            p + "self_attn.q_proj.weight": (q, C), p + "self_attn.k_proj.weight": (kv, C),
            p + "self_attn.v_proj.weight": (kv, C), p + "self_attn.o_proj.weight": (C, q),
            p + "mlp.gate_proj.weight": (F, C), p + "mlp.up_proj.weight": (F, C), p + "mlp.down_proj.weight": (C, F),
        })
    return shapes


def load_tensor(reader: gguf.GGUFReader, plan: TensorPlan, dtype: torch.dtype, path: Path) -> torch.Tensor:
    """Dequantize one planned tensor into HF layout and `dtype`."""
    tensor = reader.tensors[plan.index]
    array = dequantize_tensor(tensor, path)
    if plan.permute_heads is not None:
        array = unpermute_rows(array, plan.permute_heads)
    if not array.flags.writeable:  # an F32 tensor is a view of the read-only memory map
        array = array.copy()
    return torch.from_numpy(np.ascontiguousarray(array)).to(dtype)


def dequantize_tensor(tensor: gguf.ReaderTensor, path: Path) -> np.ndarray:
    """float32 values of a GGUF tensor in numpy (HF) axis order: GGUF lists dims innermost first."""
    array = _dequantize(tensor.data, tensor, path)
    shape = tuple(int(d) for d in reversed(tensor.shape.tolist()))
    if array.shape != shape:
        array = array.reshape(shape)
    return array.astype(np.float32, copy=False)


def _dequantize(data: np.ndarray, tensor: gguf.ReaderTensor, path: Path) -> np.ndarray:
    try:
        return gguf.quants.dequantize(data, tensor.tensor_type)
    except NotImplementedError:
        raise ConversionError(
            f"{path}: tensor {tensor.name} has type {tensor.tensor_type.name}, which gguf "
            f"{_gguf_version()} cannot dequantize; re-quantize the model to a supported type "
            "(F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K-Q6_K, IQ*)"
        ) from None


def unpermute_rows(weight: np.ndarray, n_heads: int) -> np.ndarray:
    """Undo llama.cpp's q/k row order: per head it stores rows (0, D/2, 1, D/2+1, ...) for its
    interleaved-pair RoPE, where HF rotates the halves [0, D/2) and [D/2, D)."""
    rows = weight.shape[0]
    half = rows // n_heads // 2
    return weight.reshape(n_heads, half, 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def _check_shapes(plans: list[TensorPlan], expected: dict[str, tuple[int, ...]], path: Path) -> None:
    found = {p.hf_name: p for p in plans}
    problems = [f"missing tensor for {n} (shape {list(s)})" for n, s in expected.items() if n not in found]
    problems += [
        f"tensor {p.gguf_name} has shape {list(p.shape)}, the metadata implies {list(expected[p.hf_name])}"
        for p in plans if p.hf_name in expected and p.shape != expected[p.hf_name]
    ]
    if problems:
        raise ConversionError(f"{path}: tensors do not match the metadata: " + "; ".join(problems))


def _gguf_version() -> str:
    from importlib.metadata import version

    return version("gguf")
