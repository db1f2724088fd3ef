"""Tiny Llama GGUF files written with gguf's own writer, the way llama.cpp's converter writes them.

A small byte-level BPE vocabulary is trained on a fixed text (so it has real merges, digit merges
included); weights are random HF-layout arrays whose q/k rows get llama.cpp's RoPE permutation before
they are quantized. K-quant blocks (which gguf 0.19 cannot quantize) are built from random bytes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import gguf
import numpy as np

Q = gguf.GGMLQuantizationType
CORPUS = """The quick brown fox jumps over the lazy dog. It's a test, isn't it? We'll see: they're here.
In 2024 there were 12345 foxes and 678 dogs; 90% of them slept 10 hours a day, 365 days a year.
Tokenizers split text into pieces, then merge bytes into tokens. Café, naïve, déjà vu — ünïcödé!
    indented code: def f(x): return x * 2 + 1  # comment
Numbers again: 2024, 2025, 100, 1000, 42, 7, 3.14159, 1,000,000 and phone 555-0123.
""" * 4
CONTROL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
USER_TOKENS = ["<tool>"]
CHAT_TEMPLATE = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] "
                 "+ '<|im_end|>' + '\\n'}}{% endfor %}")
# fp16 fields (d, dmin) of each K-quant block, by byte offset, as gguf's dequantize_blocks reads them
K_QUANT_FP16_OFFSETS = {Q.Q2_K: (80, 82), Q.Q3_K: (108,), Q.Q4_K: (0, 2), Q.Q5_K: (0, 2), Q.Q6_K: (208,)}


@dataclass
class TinySpec:
    """What to write. `types` maps a GGUF tensor role (e.g. "blk.0.attn_q") to its GGML type."""

    hidden: int = 64
    heads: int = 4
    kv_heads: int = 2
    layers: int = 2
    intermediate: int = 256  # a multiple of 256, so ffn_down rows can hold K-quant blocks
    context: int = 256
    rope_theta: float = 10000.0
    tied: bool = False
    arch: str = "llama"
    tokenizer_model: str = "gpt2"
    pre: str | None = "smollm"
    add_bos: bool | None = False  # None: no tokenizer.ggml.add_bos_token key
    types: dict[str, Q] = field(default_factory=dict)
    rope_freqs: np.ndarray | None = None
    metadata: dict[str, object] = field(default_factory=dict)  # extra keys: name -> str/int/float/bool
    extra_tensors: dict[str, np.ndarray] = field(default_factory=dict)
    raw_tensors: dict[str, tuple[np.ndarray, Q]] = field(default_factory=dict)  # name -> (bytes, type)
    seed: int = 0

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


MIXED_TYPES = {  # every type gguf can write, plus two hand-built K quants
    "token_embd": Q.Q8_0, "output": Q.F16,
    "blk.0.attn_q": Q.F32, "blk.0.attn_k": Q.Q4_0, "blk.0.attn_v": Q.Q4_1, "blk.0.attn_output": Q.Q5_0,
    "blk.0.ffn_gate": Q.Q5_1, "blk.0.ffn_up": Q.Q8_0, "blk.0.ffn_down": Q.Q4_K,
    "blk.1.attn_q": Q.Q8_0, "blk.1.attn_k": Q.F32, "blk.1.attn_v": Q.BF16, "blk.1.attn_output": Q.F16,
    "blk.1.ffn_gate": Q.Q4_1, "blk.1.ffn_up": Q.Q4_0, "blk.1.ffn_down": Q.Q6_K,
}


@lru_cache(maxsize=None)
def vocabulary() -> tuple[list[str], list[int], list[str]]:
    """(tokens, token types, merges) of a byte-level BPE trained on CORPUS, specials first."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)  # GPT-2 regex: digits merge
    trainer = trainers.BpeTrainer(vocab_size=420, special_tokens=CONTROL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([CORPUS], trainer)
    vocab = tok.get_vocab()
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])] + USER_TOKENS
    types = [3 if t in CONTROL_TOKENS else 4 if t in USER_TOKENS else 1 for t in tokens]
    import json

    merges = [" ".join(m) if isinstance(m, list) else m for m in json.loads(tok.to_str())["model"]["merges"]]
    return tokens, types, merges


def llama_cpp_permute(w: np.ndarray, n_heads: int) -> np.ndarray:
    """convert_hf_to_gguf.py's LlamaModel.permute: per head, rows of the two halves interleaved."""
    return w.reshape(n_heads, 2, w.shape[0] // n_heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def hf_weights(spec: TinySpec) -> dict[str, np.ndarray]:
    """Random weights in HF layout and HF names' GGUF counterparts (q/k not yet permuted)."""
    rng = np.random.default_rng(spec.seed)
    V, C, F, D = len(vocabulary()[0]), spec.hidden, spec.intermediate, spec.head_dim
    mat = lambda *shape: (rng.standard_normal(shape) * 0.3).astype(np.float32)  # noqa: E731 (peaky logits)
    norm = lambda: (1 + 0.1 * rng.standard_normal(C)).astype(np.float32)  # noqa: E731
    w = {"token_embd": mat(V, C), "output_norm": norm()}
    if not spec.tied:
        w["output"] = mat(V, C)
    for i in range(spec.layers):
        p = f"blk.{i}."
        w.update({p + "attn_norm": norm(), p + "ffn_norm": norm(),
                  p + "attn_q": mat(spec.heads * D, C), p + "attn_k": mat(spec.kv_heads * D, C),
                  p + "attn_v": mat(spec.kv_heads * D, C), p + "attn_output": mat(C, spec.heads * D),
                  p + "ffn_gate": mat(F, C), p + "ffn_up": mat(F, C), p + "ffn_down": mat(C, F) / 4})
    return w


def write_tiny_gguf(path: Path, spec: TinySpec | None = None) -> Path:
    spec = spec or TinySpec()
    tokens, types, merges = vocabulary()
    w = gguf.GGUFWriter(str(path), spec.arch)
    a = spec.arch
    w.add_name("tessera tiny test")
    w.add_license("apache-2.0")
    w.add_context_length(spec.context)
    w.add_embedding_length(spec.hidden)
    w.add_block_count(spec.layers)
    w.add_feed_forward_length(spec.intermediate)
    w.add_head_count(spec.heads)
    w.add_head_count_kv(spec.kv_heads)
    w.add_rope_dimension_count(spec.head_dim)
    w.add_rope_freq_base(spec.rope_theta)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(len(tokens))
    w.add_tokenizer_model(spec.tokenizer_model)
    if spec.pre is not None:
        w.add_tokenizer_pre(spec.pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_pad_token_id(2)
    if spec.add_bos is not None:
        w.add_add_bos_token(spec.add_bos)
    w.add_chat_template(CHAT_TEMPLATE)
    for key, value in spec.metadata.items():
        _add_value(w, key.replace("{arch}", a), value)
    rng = np.random.default_rng(spec.seed + 1)
    for role, array in hf_weights(spec).items():
        if role.endswith("attn_q"):
            array = llama_cpp_permute(array, spec.heads)
        elif role.endswith("attn_k"):
            array = llama_cpp_permute(array, spec.kv_heads)
        _add_tensor(w, f"{role}.weight", array, spec.types.get(role, Q.F32), rng)
    if spec.rope_freqs is not None:
        w.add_tensor("rope_freqs.weight", spec.rope_freqs.astype(np.float32))
    for name, array in spec.extra_tensors.items():
        w.add_tensor(name, array)
    for name, (raw, qtype) in spec.raw_tensors.items():
        w.add_tensor(name, raw, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def k_quant_blocks(rows: int, cols: int, qtype: Q, rng: np.random.Generator) -> np.ndarray:
    """Random but well-formed K-quant bytes (rows, bytes per row): small finite fp16 scales."""
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(rows, cols // block, size), dtype=np.uint8)
    for offset in K_QUANT_FP16_OFFSETS[qtype]:
        scales = rng.uniform(2e-4, 6e-4, size=(rows, cols // block)).astype(np.float16)
        raw[:, :, offset:offset + 2] = scales.view(np.uint8).reshape(rows, cols // block, 2)
    return raw.reshape(rows, -1)


def _add_tensor(w: gguf.GGUFWriter, name: str, array: np.ndarray, qtype: Q, rng: np.random.Generator) -> None:
    if qtype in K_QUANT_FP16_OFFSETS:  # gguf can dequantize these but not quantize them
        w.add_tensor(name, k_quant_blocks(*array.shape, qtype, rng), raw_dtype=qtype)
    elif qtype in (Q.Q8_1, Q.Q8_K):  # gguf can do neither: random bytes of the right size
        block, size = gguf.GGML_QUANT_SIZES[qtype]
        raw = rng.integers(0, 256, size=(array.shape[0], array.shape[1] // block * size), dtype=np.uint8)
        w.add_tensor(name, raw, raw_dtype=qtype)
    elif qtype in (Q.F32, Q.F16):
        w.add_tensor(name, gguf.quants.quantize(array, qtype))
    else:
        w.add_tensor(name, gguf.quants.quantize(array, qtype), raw_dtype=qtype)


def _add_value(w: gguf.GGUFWriter, key: str, value: object) -> None:
    if isinstance(value, bool):
        w.add_bool(key, value)
    elif isinstance(value, int):
        w.add_uint32(key, value)
    elif isinstance(value, float):
        w.add_float32(key, value)
    else:
        w.add_string(key, str(value))
