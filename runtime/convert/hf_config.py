"""HF config.json (LlamaForCausalLM, old layout) from a GGUF's llama.* metadata and tensor list.

Only Llama-architecture files are accepted; every shape number is read, none defaulted silently.
"""
from __future__ import annotations

from tessera.runtime.convert.errors import ConversionError
from tessera.runtime.convert.gguf_file import GGUFFile
from tessera.runtime.convert.rope import clean_float, llama3_scaling_from_rope_freqs, rope_scaling_from_metadata
from tessera.runtime.convert.tensors import dequantize_tensor

SUPPORTED_ARCHITECTURES = ("llama",)  # llama.cpp writes Mistral (v0.1-v0.3) and SmolLM2 as "llama" too


def check_architecture(file: GGUFFile) -> str:
    arch = file.architecture
    if arch not in SUPPORTED_ARCHITECTURES:
        raise ConversionError(
            f"{file.path}: general.architecture={arch!r} is not supported; tessera-convert converts only "
            f"{list(SUPPORTED_ARCHITECTURES)} (the dense Llama family, which llama.cpp also writes for Mistral 7B "
            "and SmolLM2)"
        )
    experts = file.get(f"{arch}.expert_count", 0) or 0
    if experts > 0:
        raise ConversionError(
            f"{file.path}: {arch}.expert_count={experts}: mixture-of-experts (Mixtral-style) files are not "
            "supported; Tessera's runtime is a dense Llama"
        )
    return arch


def build_hf_config(file: GGUFFile, dtype: str, tensor_shapes: dict[str, tuple[int, ...]]) -> dict:
    """config.json as a dict; `tensor_shapes` maps GGUF tensor names to numpy-order shapes."""
    arch = check_architecture(file)
    key = lambda name: file.require(f"{arch}.{name}")  # noqa: E731
    hidden = int(key("embedding_length"))
    heads = int(key("attention.head_count"))
    kv_heads = int(file.get(f"{arch}.attention.head_count_kv", heads))
    head_dim = _head_dim(file, arch, hidden, heads)
    vocab_size = _vocab_size(file, arch, tensor_shapes)
    rope_theta = clean_float(file.get(f"{arch}.rope.freq_base", 10000.0))
    rope_scaling = _rope_scaling(file, arch, rope_theta, head_dim)
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": vocab_size,
        "hidden_size": hidden,
        "intermediate_size": int(key("feed_forward_length")),
        "num_hidden_layers": int(key("block_count")),
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": head_dim,
        "rms_norm_eps": clean_float(key("attention.layer_norm_rms_epsilon")),
        "rope_theta": rope_theta,
        "rope_scaling": rope_scaling,
        "max_position_embeddings": int(key("context_length")),
        "tie_word_embeddings": "output.weight" not in tensor_shapes,
        "bos_token_id": file.get("tokenizer.ggml.bos_token_id"),
        "eos_token_id": file.get("tokenizer.ggml.eos_token_id"),
        "pad_token_id": file.get("tokenizer.ggml.padding_token_id"),
        "torch_dtype": dtype,
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
    }
    if heads % kv_heads:
        raise ConversionError(
            f"{file.path}: {arch}.attention.head_count={heads} is not a multiple of head_count_kv={kv_heads}"
        )
    return config


def _head_dim(file: GGUFFile, arch: str, hidden: int, heads: int) -> int:
    rope_dims = file.get(f"{arch}.rope.dimension_count")
    key_length = file.get(f"{arch}.attention.key_length")
    value_length = file.get(f"{arch}.attention.value_length")
    head_dim = int(key_length or rope_dims or hidden // heads)
    if rope_dims is not None and int(rope_dims) != head_dim:
        raise ConversionError(
            f"{file.path}: {arch}.rope.dimension_count={rope_dims} differs from the head size {head_dim} "
            "(partial rotary embedding); Tessera rotates whole heads only"
        )
    if value_length is not None and int(value_length) != head_dim:
        raise ConversionError(
            f"{file.path}: {arch}.attention.value_length={value_length} differs from key_length={head_dim}; "
            "Llama needs equal key and value head sizes"
        )
    return head_dim


def _vocab_size(file: GGUFFile, arch: str, tensor_shapes: dict[str, tuple[int, ...]]) -> int:
    tokens = file.reader.fields.get("tokenizer.ggml.tokens")
    n_tokens = len(tokens.data) if tokens is not None else file.get(f"{arch}.vocab_size")
    if "token_embd.weight" not in tensor_shapes:
        raise ConversionError(f"{file.path}: tensor token_embd.weight is missing; the GGUF is incomplete")
    rows = int(tensor_shapes["token_embd.weight"][0])
    if n_tokens is None:
        return rows
    if int(n_tokens) != rows:
        raise ConversionError(
            f"{file.path}: the vocabulary has {n_tokens} tokens but token_embd.weight has {rows} rows; "
            "llama.cpp would refuse this file too"
        )
    return rows


def _rope_scaling(file: GGUFFile, arch: str, rope_theta: float, head_dim: int) -> dict | None:
    prefix = f"{arch}.rope.scaling."
    values = {k[len(prefix):]: file.get(k) for k in file.keys() if k.startswith(prefix)}
    if file.has(f"{arch}.rope.scale_linear"):  # pre-2024 files
        values.setdefault("type", "linear")
        values.setdefault("factor", file.get(f"{arch}.rope.scale_linear"))
    scaling = rope_scaling_from_metadata(values, arch, file.path)
    freqs = next((t for t in file.reader.tensors if t.name == "rope_freqs.weight"), None)
    if freqs is None:
        return scaling
    if scaling is not None:
        raise ConversionError(
            f"{file.path}: both {arch}.rope.scaling.type={scaling['rope_type']!r} and a rope_freqs.weight tensor; "
            "tessera-convert cannot tell which scaling the model uses"
        )
    return llama3_scaling_from_rope_freqs(dequantize_tensor(freqs, file.path), rope_theta, head_dim, file.path)
