"""Llama-family decoder (RMSNorm, RoPE of every supported type, GQA, SwiGLU; Qwen2's q/k/v biases,
Mistral's sliding window) in plain torch.

Parameter names match Hugging Face Llama/Mistral/Qwen2ForCausalLM, so their safetensors load as is.
A serving engine drives the model layer by layer and brings its own attention:

    h = model.embed(tokens)                    # (B, T, C)
    rope = model.rope(positions)               # positions: (B, T) absolute token positions
    for layer in model.model.layers:
        q, k, v = layer.qkv(h, rope)           # (B, Hq, T, D), (B, Hkv, T, D) x2, RoPE applied
        ...write k, v to the engine's cache, read the keys/values to attend to...
        o = attend(q, k_all, v_all)            # (B, Hq, T, D), any attention (paged, sparse)
        h = layer.finish(h, o)                 # o_proj + residual + MLP block
    logits = model.logits(h)                   # (B, T, vocab), float32

`Transformer.forward(tokens)` does exactly this with causal SDPA and is the training path and the
reference for any other attention.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tessera.runtime.config import ModelConfig
from tessera.runtime.rope import rope_parameters


@dataclass
class Rope:
    """cos/sin tables for the positions of one forward pass, each (B, T, D) or (T, D)."""

    cos: torch.Tensor
    sin: torch.Tensor


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x: torch.Tensor, rope: Rope) -> torch.Tensor:
    """x: (B, T, H, D). HF's half-split convention (not interleaved pairs), as its weights expect."""
    cos, sin = rope.cos.unsqueeze(-2), rope.sin.unsqueeze(-2)  # (B, T, 1, D)
    return x * cos + rotate_half(x) * sin


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int | None = None) -> torch.Tensor:
    """Reference attention: q (B, Hq, T, D) are the last T of the S key positions (B, Hkv, S, D).

    Query i sees keys 0 .. S-T+i (the causal mask aligned to the bottom right), so this serves
    full prefill (S == T), chunked prefill and single-token decode against a contiguous cache.
    With a sliding window w, query i sees only the w keys ending at its own position (Mistral's rule).
    """
    T, S = q.shape[-2], k.shape[-2]
    gqa = q.shape[1] != k.shape[1]
    if T == S and (window is None or window >= S):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
    seen = torch.ones(T, S, dtype=torch.bool, device=q.device).tril(diagonal=S - T)
    if window is not None and window < S:
        seen &= ~torch.ones(T, S, dtype=torch.bool, device=q.device).tril(diagonal=S - T - window)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=seen, enable_gqa=gqa)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # normalise in float32 whatever the model dtype, like HF LlamaRMSNorm
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(x.dtype)


class Attention(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = D = config.head_dim
        C = config.hidden_size
        self.q_proj = nn.Linear(C, self.num_heads * D, bias=config.qkv_bias)
        self.k_proj = nn.Linear(C, self.num_kv_heads * D, bias=config.qkv_bias)
        self.v_proj = nn.Linear(C, self.num_kv_heads * D, bias=config.qkv_bias)
        self.o_proj = nn.Linear(self.num_heads * D, C, bias=config.o_proj_bias)

    def qkv(self, x: torch.Tensor, rope: Rope):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.num_heads, self.head_dim)
        k = self.k_proj(x).view(B, T, self.num_kv_heads, self.head_dim)
        v = self.v_proj(x).view(B, T, self.num_kv_heads, self.head_dim)
        q, k = apply_rope(q, rope), apply_rope(k, rope)
        return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, H, T, D)

    def out(self, o: torch.Tensor) -> torch.Tensor:
        B, _, T, _ = o.shape  # (B, Hq, T, D)
        return self.o_proj(o.transpose(1, 2).reshape(B, T, -1))


class MLP(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        C, F_ = config.hidden_size, config.intermediate_size
        self.gate_proj = nn.Linear(C, F_, bias=config.mlp_bias)
        self.up_proj = nn.Linear(C, F_, bias=config.mlp_bias)
        self.down_proj = nn.Linear(F_, C, bias=config.mlp_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))  # SwiGLU


class DecoderLayer(nn.Module):
    def __init__(self, config: ModelConfig, layer: int = 0):
        super().__init__()
        self.window = config.layer_window(layer)  # None: full causal attention
        self.self_attn = Attention(config)
        self.mlp = MLP(config)
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)

    def qkv(self, h: torch.Tensor, rope: Rope):
        """h (B, T, C) -> q (B, Hq, T, D), k and v (B, Hkv, T, D), RoPE applied to q and k."""
        return self.self_attn.qkv(self.input_layernorm(h), rope)

    def finish(self, h: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
        """Residual stream h (B, T, C) and attention output o (B, Hq, T, D) -> next h (B, T, C)."""
        h = h + self.self_attn.out(o)
        return h + self.mlp(self.post_attention_layernorm(h))

    def forward(self, h: torch.Tensor, rope: Rope) -> torch.Tensor:
        q, k, v = self.qkv(h, rope)
        return self.finish(h, causal_attention(q, k, v, self.window))


class LlamaModel(nn.Module):
    """The `model.` prefix of HF parameter names: embeddings, layers, final norm."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(config, l) for l in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)


class Transformer(nn.Module):
    """LlamaForCausalLM: `model` (the decoder stack) and `lm_head`."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.model = LlamaModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    @property
    def layers(self) -> nn.ModuleList:
        return self.model.layers

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model.embed_tokens(tokens)  # (B, T) -> (B, T, C)

    def rope(self, positions: torch.Tensor) -> Rope:
        """positions (B, T) or (T,) of int -> cos/sin in the model's dtype, computed in float32."""
        inv_freq, scaling = rope_parameters(self.config, positions.device)
        freqs = positions[..., None].float() * inv_freq  # (..., T, D/2)
        emb = torch.cat((freqs, freqs), dim=-1)  # (..., T, D)
        dtype = self.model.embed_tokens.weight.dtype
        cos, sin = emb.cos(), emb.sin()
        if scaling != 1.0:  # YaRN's attention factor
            cos, sin = cos * scaling, sin * scaling
        return Rope(cos.to(dtype), sin.to(dtype))

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.model.norm(h)).float()  # (B, T, vocab)

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """tokens (B, T) -> logits (B, T, vocab); full causal attention over the T tokens."""
        if positions is None:
            positions = torch.arange(tokens.shape[1], device=tokens.device)
        h = self.embed(tokens)
        rope = self.rope(positions)
        for layer in self.model.layers:
            h = layer(h, rope)
        return self.logits(h)

    def init_weights(self, seed: int, std: float = 0.02) -> None:
        """Seeded normal init (as HF `initializer_range`); residual outputs scaled by depth (GPT-2)."""
        gen = torch.Generator().manual_seed(seed)
        residual_std = std / math.sqrt(2 * self.config.num_hidden_layers)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.endswith("layernorm.weight") or name == "model.norm.weight":
                    p.fill_(1.0)
                    continue
                if name.endswith(".bias"):
                    p.zero_()
                    continue
                is_residual_out = name.endswith(("o_proj.weight", "down_proj.weight"))
                sample = torch.randn(p.shape, generator=gen) * (residual_std if is_residual_out else std)
                p.copy_(sample.to(p.dtype))

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
