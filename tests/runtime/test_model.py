"""The Llama model: shapes, per-layer decode against the full forward, RoPE llama3 scaling, attention mask.

All with tiny random weights on CPU in float32, so equality holds to float rounding.
"""
import math

import pytest
import torch

from tessera.runtime.config import ModelConfig, RopeScaling
from tessera.runtime.model import Transformer, causal_attention
from tessera.runtime.rope import rope_parameters
from tessera.runtime.train.decode import ContiguousKVCache, forward_with_cache, greedy_generate


def tiny_config(**overrides) -> ModelConfig:
    base = dict(vocab_size=61, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, head_dim=8, rope_theta=10000.0)
    return ModelConfig(**{**base, **overrides})


def tiny_model(seed=0, **overrides) -> Transformer:
    model = Transformer(tiny_config(**overrides))
    model.init_weights(seed, std=0.2)  # larger than usual so logits differ clearly between tokens
    return model.eval()


def test_forward_shapes_and_parameter_names():
    model = tiny_model()
    tokens = torch.randint(0, 61, (3, 11))
    assert model(tokens).shape == (3, 11, 61)
    names = set(model.state_dict())
    for name in ("model.embed_tokens.weight", "model.norm.weight", "lm_head.weight",
                 "model.layers.1.self_attn.q_proj.weight", "model.layers.1.self_attn.k_proj.weight",
                 "model.layers.1.self_attn.v_proj.weight", "model.layers.1.self_attn.o_proj.weight",
                 "model.layers.1.mlp.gate_proj.weight", "model.layers.1.mlp.up_proj.weight",
                 "model.layers.1.mlp.down_proj.weight", "model.layers.1.input_layernorm.weight",
                 "model.layers.1.post_attention_layernorm.weight"):
        assert name in names
    assert model.state_dict()["model.layers.0.self_attn.k_proj.weight"].shape == (2 * 8, 32)


def test_per_layer_qkv_shapes():
    model = tiny_model()
    h = model.embed(torch.randint(0, 61, (2, 5)))
    q, k, v = model.layers[0].qkv(h, model.rope(torch.arange(5)))
    assert q.shape == (2, 4, 5, 8) and k.shape == (2, 2, 5, 8) and v.shape == (2, 2, 5, 8)


@pytest.mark.parametrize("tied", [False, True])
def test_token_by_token_decode_matches_full_forward(tied):
    model = tiny_model(tie_word_embeddings=tied)
    tokens = torch.randint(0, 61, (2, 17), generator=torch.Generator().manual_seed(1))
    full = model(tokens)
    cache = ContiguousKVCache()
    stepwise = torch.cat([forward_with_cache(model, tokens[:, t : t + 1], cache) for t in range(17)], dim=1)
    torch.testing.assert_close(stepwise, full, atol=1e-5, rtol=1e-5)


def test_chunked_prefill_then_decode_matches_full_forward():
    model = tiny_model(rope_scaling={"rope_type": "llama3", "factor": 4.0, "low_freq_factor": 1.0,
                                     "high_freq_factor": 2.0, "original_max_position_embeddings": 16})
    tokens = torch.randint(0, 61, (1, 40), generator=torch.Generator().manual_seed(2))
    cache = ContiguousKVCache()
    chunks = [tokens[:, :13], tokens[:, 13:30], tokens[:, 30:31], tokens[:, 31:]]
    pieces = torch.cat([forward_with_cache(model, c, cache) for c in chunks], dim=1)
    torch.testing.assert_close(pieces, model(tokens), atol=1e-5, rtol=1e-5)


def test_greedy_generate_matches_argmax_of_full_forward():
    model = tiny_model()
    prompt = [3, 14, 15, 9, 2, 6]
    new = greedy_generate(model, prompt, 5)
    seq = list(prompt)
    for _ in range(5):
        seq.append(int(model(torch.tensor([seq]))[0, -1].argmax()))
    assert new == seq[len(prompt):]


def llama3_inv_freq_reference(base, dim, factor, low, high, old_ctx):
    """Meta's apply_scaling from the Llama 3.1 reference code, one frequency at a time."""
    out = []
    for i in range(0, dim, 2):
        freq = 1.0 / base ** (i / dim)
        wavelen = 2 * math.pi / freq
        if wavelen < old_ctx / high:
            out.append(freq)
        elif wavelen > old_ctx / low:
            out.append(freq / factor)
        else:
            smooth = (old_ctx / wavelen - low) / (high - low)
            out.append((1 - smooth) * freq / factor + smooth * freq)
    return torch.tensor(out, dtype=torch.float64)


def test_rope_llama3_scaling_matches_direct_formula():
    scaling = RopeScaling(factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                          original_max_position_embeddings=8192)
    config = ModelConfig(hidden_size=4096, num_attention_heads=32, num_key_value_heads=8,
                         rope_theta=500000.0, rope_scaling=scaling)
    ours = rope_parameters(config)[0].double()
    expected = llama3_inv_freq_reference(500000.0, 128, 8.0, 1.0, 4.0, 8192)
    torch.testing.assert_close(ours, expected, rtol=1e-6, atol=0)
    unscaled = rope_parameters(ModelConfig(hidden_size=4096, num_attention_heads=32,
                                         num_key_value_heads=8, rope_theta=500000.0))[0].double()
    assert (ours < unscaled).any() and (ours[:8] == unscaled[:8]).all()  # short wavelengths kept


def test_causal_attention_aligns_queries_to_the_last_keys():
    gen = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(1, 2, n, 4, generator=gen) for n in (3, 7, 7))
    scores = (q @ k.transpose(-2, -1)) / 2.0  # (1, 2, 3, 7); query i is position 4 + i
    allowed = torch.arange(7)[None, :] <= (4 + torch.arange(3))[:, None]
    expected = scores.masked_fill(~allowed, float("-inf")).softmax(-1) @ v
    torch.testing.assert_close(causal_attention(q, k, v), expected, atol=1e-6, rtol=1e-6)


def test_bf16_model_runs_and_keeps_float32_logits():
    model = tiny_model().to(torch.bfloat16)
    logits = model(torch.randint(0, 61, (1, 9)))
    assert logits.dtype == torch.float32 and torch.isfinite(logits).all()


def test_batched_positions_give_each_row_its_own_rotation():
    model = tiny_model()
    tokens = torch.randint(0, 61, (2, 3))
    positions = torch.tensor([[0, 1, 2], [5, 6, 7]])
    h = model.embed(tokens)
    q, k, _ = model.layers[0].qkv(h, model.rope(positions))
    q1, k1, _ = model.layers[0].qkv(h[1:], model.rope(positions[1]))
    torch.testing.assert_close(q[1:], q1)
    torch.testing.assert_close(k[1:], k1)
