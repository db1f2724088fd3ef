"""Tiny random checkpoints built and saved by transformers (the oracle), in either config.json layout.

Each VARIANT is a transformers config for one supported architecture feature; `save_hf_model` writes it
with save_pretrained (transformers 5's layout: rope_parameters, dtype) and `to_old_layout` rewrites the
same folder in the layout older releases wrote (top-level rope_theta / rope_scaling, torch_dtype).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

SMALL = dict(vocab_size=96, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=256, initializer_range=0.3)  # peaky logits: no greedy ties
VARIANTS = {
    "llama_gqa_llama3": ("llama", dict(rope_parameters={"rope_type": "llama3", "rope_theta": 50000.0, "factor": 8.0,
                                                       "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                                       "original_max_position_embeddings": 32})),
    "llama_tied": ("llama", dict(tie_word_embeddings=True)),
    "llama_bias_head_dim": ("llama", dict(attention_bias=True, mlp_bias=True, head_dim=32)),
    "llama_linear": ("llama", dict(rope_parameters={"rope_type": "linear", "rope_theta": 10000.0, "factor": 4.0})),
    "llama_dynamic": ("llama", dict(rope_parameters={"rope_type": "dynamic", "rope_theta": 10000.0, "factor": 2.0})),
    "llama_yarn": ("llama", dict(rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
                                                  "original_max_position_embeddings": 64})),
    "mistral": ("mistral", dict(sliding_window=None)),
    "mistral_window": ("mistral", dict(sliding_window=12)),
    "qwen2": ("qwen2", dict(tie_word_embeddings=True)),
    "qwen2_window": ("qwen2", dict(use_sliding_window=True, sliding_window=12, max_window_layers=1)),
}


def hf_config(variant: str):
    from transformers import LlamaConfig, MistralConfig, Qwen2Config

    arch, extra = VARIANTS[variant]
    cls = {"llama": LlamaConfig, "mistral": MistralConfig, "qwen2": Qwen2Config}[arch]
    return cls(**SMALL, bos_token_id=1, eos_token_id=2, **extra)


def save_hf_model(variant: str, folder: Path, dtype: torch.dtype = torch.float32, sharded: bool = False,
                  seed: int = 0):
    """Build the variant with transformers, seeded, and save it; returns the transformers model (eval)."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(hf_config(variant)).to(dtype).eval()
    with torch.no_grad():  # transformers zero-initialises biases; random ones test that they are loaded
        for name, p in model.named_parameters():
            if name.endswith(".bias"):
                p.normal_(0.0, 0.3)
    model.save_pretrained(folder, max_shard_size="40KB" if sharded else "50GB")
    # the oracle is the checkpoint as transformers loads it (casting a built model would also round
    # the rotary inv_freq buffer to bf16, which from_pretrained does not)
    return AutoModelForCausalLM.from_pretrained(folder).eval()


def to_old_layout(folder: Path) -> None:
    """Rewrite config.json as transformers 4.x wrote it: rope_theta / rope_scaling at the top, torch_dtype."""
    path = folder / "config.json"
    hf = json.loads(path.read_text())
    rope = dict(hf.pop("rope_parameters"))
    hf["rope_theta"] = rope.pop("rope_theta")
    rope_type = rope.pop("rope_type")
    hf["rope_scaling"] = None if rope_type == "default" else {"type": rope_type, **rope}
    hf["torch_dtype"] = hf.pop("dtype")
    path.write_text(json.dumps(hf, indent=2))
