"""Hyper-parameters of a Llama-family decoder (Llama, Mistral, Qwen2) as the runtime computes it.

`ModelConfig.from_json` reads a Hugging Face config.json strictly (runtime/hf_config.py); `to_hf_dict`
writes one that transformers loads into the same model.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

SUPPORTED_ARCHITECTURES = ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM")
MODEL_TYPES = {"LlamaForCausalLM": "llama", "MistralForCausalLM": "mistral", "Qwen2ForCausalLM": "qwen2"}
DTYPE_NAMES = ("float32", "bfloat16", "float16")
ROPE_TYPES = ("linear", "dynamic", "llama3", "yarn")  # besides "default" (no scaling)
FULL_ATTENTION, SLIDING_ATTENTION = "full_attention", "sliding_attention"


@dataclass
class RopeScaling:
    """RoPE frequency scaling as transformers' modeling_rope_utils defines it for these architectures.

    linear: every frequency / factor; dynamic (NTK): identical to no scaling at positions below
    max_position_embeddings, the only positions the engine serves; llama3: long wavelengths / factor,
    short ones kept, blended between; yarn: NTK-by-parts blend plus an attention factor on cos/sin.
    """

    rope_type: str = "llama3"
    factor: float | None = 8.0
    low_freq_factor: float = 1.0  # llama3
    high_freq_factor: float = 4.0  # llama3
    original_max_position_embeddings: int | None = 8192  # llama3, yarn
    beta_fast: float | None = None  # yarn (None: 32)
    beta_slow: float | None = None  # yarn (None: 1)
    mscale: float | None = None  # yarn
    mscale_all_dim: float | None = None  # yarn
    attention_factor: float | None = None  # yarn (None: from factor / mscale)
    truncate: bool = True  # yarn

    def __post_init__(self):
        if self.rope_type not in ROPE_TYPES:
            raise ValueError(f"rope_type {self.rope_type!r} is not supported; use one of {ROPE_TYPES}")

    def to_hf_dict(self) -> dict:
        keys = {"linear": ("factor",), "dynamic": ("factor",),
                "llama3": ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"),
                "yarn": ("factor", "original_max_position_embeddings", "beta_fast", "beta_slow", "mscale",
                         "mscale_all_dim", "attention_factor", "truncate")}[self.rope_type]
        out = {"rope_type": self.rope_type}
        out.update({k: getattr(self, k) for k in keys if getattr(self, k) is not None})
        return out


@dataclass
class ModelConfig:
    vocab_size: int = 512
    hidden_size: int = 256
    intermediate_size: int = 768
    num_hidden_layers: int = 4
    num_attention_heads: int = 8
    num_key_value_heads: int = 2
    head_dim: int | None = None  # None: hidden_size // num_attention_heads
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    rope_scaling: RopeScaling | None = None
    max_position_embeddings: int = 2048
    tie_word_embeddings: bool = False
    torch_dtype: str | None = "float32"  # None: the dtype the safetensors store (transformers' dtype="auto")
    qkv_bias: bool = False  # Qwen2; Llama's attention_bias sets this and o_proj_bias
    o_proj_bias: bool = False
    mlp_bias: bool = False
    sliding_window: int | None = None  # tokens a query sees (itself included) on sliding layers
    layer_types: list[str] | None = None  # per layer full_attention | sliding_attention; None: all sliding
    #                                       when sliding_window is set (Mistral), else all full
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    pad_token_id: int | None = None
    architectures: list[str] = field(default_factory=lambda: ["LlamaForCausalLM"])

    def __post_init__(self):
        if self.head_dim is None:
            self.head_dim = self.hidden_size // self.num_attention_heads
        if isinstance(self.rope_scaling, dict):
            d = dict(self.rope_scaling)
            rope_type = d.pop("rope_type", d.pop("type", "llama3"))
            self.rope_scaling = None if rope_type == "default" else RopeScaling(rope_type=rope_type, **d)
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads={self.num_attention_heads} must be a multiple of "
                f"num_key_value_heads={self.num_key_value_heads} (grouped-query attention)"
            )
        if self.torch_dtype is not None and self.torch_dtype not in DTYPE_NAMES:
            raise ValueError(f"torch_dtype={self.torch_dtype!r}; expected one of {DTYPE_NAMES}")
        unsupported = [a for a in self.architectures if a not in SUPPORTED_ARCHITECTURES]
        if unsupported or len(self.architectures) != 1:
            raise ValueError(f"architectures={self.architectures}: use one of {list(SUPPORTED_ARCHITECTURES)}")
        if self.sliding_window is not None and self.sliding_window < 1:
            raise ValueError(f"sliding_window={self.sliding_window} must be >= 1 or null")
        if self.layer_types is not None:
            if len(self.layer_types) != self.num_hidden_layers or \
                    not set(self.layer_types) <= {FULL_ATTENTION, SLIDING_ATTENTION}:
                raise ValueError(f"layer_types must list {self.num_hidden_layers} entries of "
                                 f"{FULL_ATTENTION!r} / {SLIDING_ATTENTION!r}")

    @property
    def num_queries_per_kv(self) -> int:
        return self.num_attention_heads // self.num_key_value_heads

    @property
    def model_type(self) -> str:
        return MODEL_TYPES[self.architectures[0]]

    def layer_window(self, layer: int) -> int | None:
        """Sliding-window length of a layer's attention, None for full causal attention."""
        if self.sliding_window is None:
            return None
        if self.layer_types is None or self.layer_types[layer] == SLIDING_ATTENTION:
            return self.sliding_window
        return None

    @property
    def has_sliding_window(self) -> bool:
        return any(self.layer_window(l) is not None for l in range(self.num_hidden_layers))

    @classmethod
    def from_hf_dict(cls, hf: dict, source: str = "config.json") -> ModelConfig:
        from tessera.runtime.hf_config import parse_hf_config

        return parse_hf_config(hf, source)

    @classmethod
    def from_json(cls, path: str | Path) -> ModelConfig:
        from tessera.runtime.hf_config import read_config_json

        return read_config_json(Path(path))

    def to_hf_dict(self) -> dict:
        """config.json in transformers' old layout (top-level rope_theta / rope_scaling, torch_dtype), which
        transformers 4.x and 5.x both read."""
        hf = {k: v for k, v in asdict(self).items()
              if k not in ("rope_scaling", "qkv_bias", "o_proj_bias", "layer_types", "sliding_window")}
        hf["model_type"] = self.model_type
        hf["hidden_act"] = "silu"
        hf["rope_scaling"] = None if self.rope_scaling is None else self.rope_scaling.to_hf_dict()
        if self.model_type == "llama":
            if self.qkv_bias != self.o_proj_bias:
                raise ValueError("Llama has one attention_bias for q/k/v/o; q/k/v-only biases are Qwen2's")
            hf["attention_bias"] = self.qkv_bias
            hf["mlp_bias"] = self.mlp_bias
        elif self.qkv_bias != (self.model_type == "qwen2") or self.o_proj_bias or self.mlp_bias:
            raise ValueError(f"{self.model_type} has fixed biases (Qwen2: q/k/v only; Mistral: none)")
        if self.model_type == "mistral":
            hf["sliding_window"] = self.sliding_window
        if self.model_type == "qwen2":
            hf.update(use_sliding_window=self.sliding_window is not None, sliding_window=self.sliding_window,
                      layer_types=self.layer_types or [self.layer_type_name(l) for l in range(self.num_hidden_layers)],
                      max_window_layers=self.num_hidden_layers)
        elif self.layer_types is not None and self.model_type == "llama":
            raise ValueError("Llama has no sliding-window layers")
        if self.torch_dtype is None:
            hf.pop("torch_dtype")
        return hf

    def layer_type_name(self, layer: int) -> str:
        return FULL_ATTENTION if self.layer_window(layer) is None else SLIDING_ATTENTION

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_hf_dict(), indent=2) + "\n")
