"""Hyper-parameters of a Llama-architecture decoder, read from and written to HF config.json.

Covers LlamaForCausalLM and MistralForCausalLM (no sliding window); other architectures are refused.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

SUPPORTED_ARCHITECTURES = ("LlamaForCausalLM", "MistralForCausalLM")
DTYPE_NAMES = ("float32", "bfloat16", "float16")


@dataclass
class RopeScaling:
    """Llama-3 "llama3" RoPE frequency scaling (long wavelengths stretched by `factor`)."""

    factor: float = 8.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int = 8192


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
    torch_dtype: str = "float32"
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    pad_token_id: int | None = None
    architectures: list[str] = field(default_factory=lambda: ["LlamaForCausalLM"])

    def __post_init__(self):
        if self.head_dim is None:
            self.head_dim = self.hidden_size // self.num_attention_heads
        if isinstance(self.rope_scaling, dict):
            self.rope_scaling = _rope_scaling_from_dict(self.rope_scaling)
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads={self.num_attention_heads} must be a multiple of "
                f"num_key_value_heads={self.num_key_value_heads} (grouped-query attention)"
            )
        if self.torch_dtype not in DTYPE_NAMES:
            raise ValueError(f"torch_dtype={self.torch_dtype!r}; expected one of {DTYPE_NAMES}")

    @property
    def num_queries_per_kv(self) -> int:
        return self.num_attention_heads // self.num_key_value_heads

    @classmethod
    def from_hf_dict(cls, hf: dict) -> ModelConfig:
        architectures = hf.get("architectures") or ["LlamaForCausalLM"]
        unsupported = [a for a in architectures if a not in SUPPORTED_ARCHITECTURES]
        if unsupported:
            raise ValueError(
                f"unsupported architecture {unsupported}; Tessera's runtime loads only "
                f"{list(SUPPORTED_ARCHITECTURES)} checkpoints"
            )
        if hf.get("sliding_window") and hf["sliding_window"] < hf.get("max_position_embeddings", 0):
            raise ValueError(
                f"sliding_window={hf['sliding_window']} is not supported (full attention only); "
                "set it to null in config.json if the model was trained without it"
            )
        if hf.get("hidden_act", "silu") != "silu" or hf.get("attention_bias") or hf.get("mlp_bias"):
            raise ValueError(
                "unsupported Llama variant: needs hidden_act='silu', attention_bias=false and "
                f"mlp_bias=false (got {hf.get('hidden_act')}, {hf.get('attention_bias')}, {hf.get('mlp_bias')})"
            )
        names = set(cls.__dataclass_fields__)
        kwargs = {k: v for k, v in hf.items() if k in names}
        kwargs["torch_dtype"] = hf.get("torch_dtype") or hf.get("dtype") or "float32"
        return cls(**kwargs)

    @classmethod
    def from_json(cls, path: str | Path) -> ModelConfig:
        return cls.from_hf_dict(json.loads(Path(path).read_text()))

    def to_hf_dict(self) -> dict:
        hf = asdict(self)
        hf["model_type"] = "mistral" if self.architectures == ["MistralForCausalLM"] else "llama"
        if self.rope_scaling is not None:
            hf["rope_scaling"] = {"rope_type": "llama3", **asdict(self.rope_scaling)}
        hf.update(hidden_act="silu", attention_bias=False, mlp_bias=False)
        return hf

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_hf_dict(), indent=2) + "\n")


def _rope_scaling_from_dict(d: dict) -> RopeScaling | None:
    rope_type = d.get("rope_type", d.get("type"))
    if rope_type in (None, "default"):
        return None
    if rope_type != "llama3":
        raise ValueError(f"rope_scaling type {rope_type!r} is not supported (only 'llama3')")
    names = RopeScaling.__dataclass_fields__
    return RopeScaling(**{k: v for k, v in d.items() if k in names})
