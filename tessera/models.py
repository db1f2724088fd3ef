"""Model catalog: the shapes (ModelSpec) of the LLMs Tessera serves, from each model's HF config.json.

Includes the 16-model Symbolic-MoE expert pool (docs/papers/mosaic.md §1.2) and its aggregators.
"""
from __future__ import annotations

import difflib

from tessera.types import ModelSpec

# Values are the HF config.json fields (num_hidden_layers, hidden_size, num_attention_heads,
# num_key_value_heads, head_dim (hidden/heads unless the config says otherwise), intermediate_size,
# vocab_size, max_position_embeddings, tie_word_embeddings); params = the published parameter count
# (model card / safetensors metadata). Configs were checked against stored copies of config.json
# (the model's own or a fine-tune/quantisation that names it as _name_or_path). All use gated MLPs
# (SwiGLU, or GeGLU for gemma-2): three MLP matrices.
# Attention details not modelled: gemma-2 uses a 4,096-token sliding window on every other
# layer (we count full KV on all layers); Qwen2 and glm-4 have small QKV biases (ignored).
# fmt: off
_COLUMNS = ("name", "hf_id", "num_layers", "hidden_size", "num_heads", "num_kv_heads", "head_dim",
            "intermediate_size", "vocab_size", "num_params", "max_position", "tied")
_TABLE = (
    ("Llama-2-7B",        "meta-llama/Llama-2-7b-hf",        32, 4096, 32, 32, 128, 11008,  32000, 6.74e9,    4096, False),
    ("Llama-2-13B",       "meta-llama/Llama-2-13b-hf",       40, 5120, 40, 40, 128, 13824,  32000, 13.02e9,   4096, False),
    ("Llama-2-70B",       "meta-llama/Llama-2-70b-hf",       80, 8192, 64,  8, 128, 28672,  32000, 68.98e9,   4096, False),
    ("Llama-3-8B",        "meta-llama/Meta-Llama-3-8B",      32, 4096, 32,  8, 128, 14336, 128256, 8.03e9,    8192, False),
    ("Llama-3-70B",       "meta-llama/Meta-Llama-3-70B",     80, 8192, 64,  8, 128, 28672, 128256, 70.55e9,   8192, False),
    ("Llama-3.1-8B",      "meta-llama/Llama-3.1-8B",         32, 4096, 32,  8, 128, 14336, 128256, 8.03e9,  131072, False),
    # Base v0.2 weights are published as mistral-community/Mistral-7B-v0.2 (same shape as the
    # official mistralai/Mistral-7B-Instruct-v0.2; rope_theta 1e6, no sliding window).
    ("Mistral-7B-v0.2",   "mistral-community/Mistral-7B-v0.2", 32, 4096, 32, 8, 128, 14336,  32000, 7.24e9,   32768, False),
    # Qwen2 (June 2024; data/validation/qwen2_speed_vllm042): a Qwen2Config dump naming Qwen/Qwen2-7B-Instruct
    # (28 layers, 3584, 28/4 heads, 18944, max_position_embeddings 32768, untied, embedding 152064 x 3584) and a stored
    # Qwen2-72B-Instruct config.json (80 layers, 8192, 64/8 heads, 29568, 32768); 72B vocab 152064 as Qwen2.5-72B's.
    # Parameter counts: computed from these shapes (7.62B, 72.71B), matching the model cards' 7.6B and 72.7B.
    ("Qwen2-7B-Instruct", "Qwen/Qwen2-7B-Instruct",          28, 3584, 28,  4, 128, 18944, 152064, 7.62e9,   32768, False),
    ("Qwen2-72B-Instruct", "Qwen/Qwen2-72B-Instruct",        80, 8192, 64,  8, 128, 29568, 152064, 72.71e9,  32768, False),
    ("Qwen2.5-7B",        "Qwen/Qwen2.5-7B",                 28, 3584, 28,  4, 128, 18944, 152064, 7.62e9,  131072, False),
    ("Qwen2.5-32B",       "Qwen/Qwen2.5-32B",                64, 5120, 40,  8, 128, 27648, 152064, 32.76e9, 131072, False),
    # bigscience/bloom config.json: n_layer 70, hidden_size 14336, n_head 112 (MHA: KV heads = heads),
    # vocab_size 250880, tied embeddings; MLP 4 x hidden = 57344, GELU (2 matrices); ALiBi, so the config
    # has no max_position_embeddings: trained at 2,048 tokens (model card, "Sequence length of 2,048"),
    # which is also vLLM's fallback max_model_len for a config without one. 176,247,271,424 parameters
    # (model card). Linear biases and LayerNorms are left out of the shape count (0.01%).
    ("BLOOM-176B",        "bigscience/bloom",                70, 14336, 112, 112, 128, 57344, 250880, 176.25e9, 2048, True),
    # Mixture of experts (_MOE below): intermediate_size is ONE expert's MLP width.
    # mistralai/Mixtral-8x7B-v0.1 config.json: 32 layers, hidden 4096, 32 heads / 8 KV, intermediate 14336,
    # vocab 32000, max_position_embeddings 32768, num_local_experts 8, num_experts_per_tok 2, untied.
    # 46.7B total, 12.9B active per token (Mistral AI, "Mixtral of experts", 2023-12-11).
    ("Mixtral-8x7B",      "mistralai/Mixtral-8x7B-v0.1",     32, 4096, 32,  8, 128, 14336,  32000, 46.7e9,   32768, False),
    # Qwen/Qwen3-30B-A3B config.json: 48 layers, hidden 2048, 32 heads / 4 KV, head_dim 128,
    # moe_intermediate_size 768 (its intermediate_size 6144 is unused: every layer is MoE, mlp_only_layers []),
    # vocab 151936, max_position_embeddings 40960, num_experts 128, num_experts_per_tok 8, untied.
    # 30.5B total, 3.3B activated (model card).
    ("Qwen3-30B-A3B",     "Qwen/Qwen3-30B-A3B",              48, 2048, 32,  4, 128,   768, 151936, 30.5e9,   40960, False),
    # --- Symbolic-MoE expert pool (16 models) ---
    ("Llama-3.1-8B-Instruct", "meta-llama/Llama-3.1-8B-Instruct", 32, 4096, 32, 8, 128, 14336, 128256, 8.03e9, 131072, False),
    # Instruct config sets max_position_embeddings 32768 (base Qwen2.5-7B: 131072).
    ("Qwen2.5-7B-Instruct", "Qwen/Qwen2.5-7B-Instruct",      28, 3584, 28,  4, 128, 18944, 152064, 7.62e9,   32768, False),
    # config max_position_embeddings is 1,024,000; the model card states a 128k context window.
    ("Mistral-Nemo-Instruct-2407", "mistralai/Mistral-Nemo-Instruct-2407", 40, 5120, 32, 8, 128, 14336, 131072, 12.25e9, 131072, False),
    ("Phi-3.5-mini-instruct", "microsoft/Phi-3.5-mini-instruct", 32, 3072, 32, 32, 96, 8192, 32064, 3.82e9, 131072, False),
    # head_dim 256 (heads * head_dim = 4096 != hidden 3584); GeGLU MLP; tied embeddings.
    ("gemma-2-9b-it",     "google/gemma-2-9b-it",            42, 3584, 16,  8, 256, 14336, 256000, 9.24e9,    8192, True),
    # ChatGLM config names: num_layers, multi_query_group_num (KV heads), kv_channels (head dim),
    # ffn_hidden_size, padded_vocab_size, seq_length.
    ("glm-4-9b-chat",     "THUDM/glm-4-9b-chat",             40, 4096, 32,  2, 128, 13696, 151552, 9.40e9,  131072, False),
    # The stored config of a copy of the 3.5 instruct model; vocab 102,400 as in EXAONE-3.0, and the
    # 7.82B count only adds up with untied embeddings.
    ("EXAONE-3.5-7.8B-Instruct", "LGAI-EXAONE/EXAONE-3.5-7.8B-Instruct", 32, 4096, 32, 8, 128, 14336, 102400, 7.82e9, 32768, False),
    ("granite-3.1-8b-instruct", "ibm-granite/granite-3.1-8b-instruct", 40, 4096, 32, 8, 128, 12800, 49155, 8.17e9, 131072, True),
    ("Qwen2.5-Math-7B",   "Qwen/Qwen2.5-Math-7B",            28, 3584, 28,  4, 128, 18944, 152064, 7.62e9,    4096, False),
    ("Qwen2.5-Coder-7B-Instruct", "Qwen/Qwen2.5-Coder-7B-Instruct", 28, 3584, 28, 4, 128, 18944, 152064, 7.62e9, 32768, False),
    ("deepseek-math-7b-instruct", "deepseek-ai/deepseek-math-7b-instruct", 30, 4096, 32, 32, 128, 11008, 102400, 6.91e9, 4096, False),
    ("DeepSeek-R1-Distill-Qwen-7B", "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", 28, 3584, 28, 4, 128, 18944, 152064, 7.62e9, 131072, False),
    ("DeepSeek-R1-Distill-Llama-8B", "deepseek-ai/DeepSeek-R1-Distill-Llama-8B", 32, 4096, 32, 8, 128, 14336, 128256, 8.03e9, 131072, False),
    # vocab 128,512 from a stored copy of the config (a LoRA merge lists 128,133); 8.80B matches 128,512.
    ("internlm3-8b-instruct", "internlm/internlm3-8b-instruct", 48, 4096, 32, 2, 128, 10240, 128512, 8.80e9, 32768, False),
    ("Mathstral-7B-v0.1", "mistralai/Mathstral-7B-v0.1",     32, 4096, 32,  8, 128, 14336,  32768, 7.25e9,   32768, False),
    # NOT CONFIRMED from its own config.json (not in the stored corpus): a fine-tune of
    # Meta-Llama-3-8B-Instruct, so its shape is assumed; its 8-bit quantised shards (9.09 GB) fit it.
    ("Bio-Medical-Llama-3-8B", "ContactDoctor/Bio-Medical-Llama-3-8B", 32, 4096, 32, 8, 128, 14336, 128256, 8.03e9, 8192, False),
)
# fmt: on

# Fields beyond the table's columns (sources in the comments above each row).
_EXTRA: dict[str, dict] = {
    "BLOOM-176B": {"gated_mlp": False, "position_encoding": "alibi"},
    "Mixtral-8x7B": {"num_experts": 8, "experts_per_token": 2, "num_active_params": 12.9e9},
    "Qwen3-30B-A3B": {"num_experts": 128, "experts_per_token": 8, "num_active_params": 3.3e9},
}

MODELS: dict[str, ModelSpec] = {}
TIED_EMBEDDINGS: frozenset[str] = frozenset(row[0] for row in _TABLE if row[-1])
for _row in _TABLE:
    _fields = dict(zip(_COLUMNS, _row))
    del _fields["tied"]
    MODELS[_row[0]] = ModelSpec(**_fields, **_EXTRA.get(_row[0], {}))

# Symbolic-MoE's short expert names -> catalog names (mosaic.md §1.2), and its aggregator per dataset.
SYMBOLIC_MOE_POOL: dict[str, str] = {
    "Llama": "Llama-3.1-8B-Instruct", "Qwen": "Qwen2.5-7B-Instruct",
    "Mistral": "Mistral-Nemo-Instruct-2407", "Phi": "Phi-3.5-mini-instruct", "Gemma": "gemma-2-9b-it",
    "GLM": "glm-4-9b-chat", "Exaone": "EXAONE-3.5-7.8B-Instruct", "Granite": "granite-3.1-8b-instruct",
    "QwenMath": "Qwen2.5-Math-7B", "QwenCode": "Qwen2.5-Coder-7B-Instruct",
    "DeepSeekMath": "deepseek-math-7b-instruct", "QwenR1": "DeepSeek-R1-Distill-Qwen-7B",
    "LlamaR1": "DeepSeek-R1-Distill-Llama-8B", "InternLM": "internlm3-8b-instruct",
    "Mathstral": "Mathstral-7B-v0.1", "BioLlama": "Bio-Medical-Llama-3-8B",
}
SYMBOLIC_MOE_AGGREGATORS: dict[str, str] = {
    "mmlu_pro": "DeepSeek-R1-Distill-Llama-8B", "aime": "DeepSeek-R1-Distill-Qwen-7B",
    "gpqa": "DeepSeek-R1-Distill-Qwen-7B", "medmcqa": "EXAONE-3.5-7.8B-Instruct",
}
# Former HF ids that still appear in papers' code.
_ALIASES = {
    "meta-llama/meta-llama-3.1-8b-instruct": "Llama-3.1-8B-Instruct",
    "meta-llama/meta-llama-3.1-8b": "Llama-3.1-8B",
    "zai-org/glm-4-9b-chat": "glm-4-9b-chat",
    # Instruct fine-tunes with their base model's shape (data/validation/lambda_vllm_sharegpt serves these).
    "meta-llama/meta-llama-3-8b-instruct": "Llama-3-8B",
    "meta-llama/meta-llama-3-70b-instruct": "Llama-3-70B",
    "mistralai/mixtral-8x7b-instruct-v0.1": "Mixtral-8x7B",
}


def _index() -> dict[str, str]:
    index = dict(_ALIASES)
    for name, spec in MODELS.items():
        index[name.lower()] = name
        index[spec.hf_id.lower()] = name
    return index


_INDEX = _index()


def model(name: str) -> ModelSpec:
    """The ModelSpec for a catalog name or HF id (case-insensitive); KeyError + close matches if unknown."""
    key = name.strip().lower()
    if key in _INDEX:
        return MODELS[_INDEX[key]]
    close = difflib.get_close_matches(key, list(_INDEX), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(repr(_INDEX[c]) for c in close)}? " if close else ""
    raise KeyError(f"unknown model {name!r}; {hint}known models: {', '.join(MODELS)}")


def list_models() -> list[str]:
    return list(MODELS)


def symbolic_moe_pool() -> list[ModelSpec]:
    """The 16 Symbolic-MoE experts, in the order of mosaic.md §1.2."""
    return [MODELS[n] for n in SYMBOLIC_MOE_POOL.values()]


def attention_params_per_layer(spec: ModelSpec) -> int:
    """Weights of one layer's attention matmuls (QKV and O)."""
    q = spec.num_heads * spec.head_dim
    kv = spec.num_kv_heads * spec.head_dim
    return spec.hidden_size * (q + 2 * kv) + q * spec.hidden_size


def expert_params(spec: ModelSpec) -> int:
    """Weights of one MLP (of one expert, for a MoE model)."""
    return (3 if spec.gated_mlp else 2) * spec.hidden_size * spec.intermediate_size


def router_params_per_layer(spec: ModelSpec) -> int:
    """The MoE gate (hidden x experts); 0 for a dense model."""
    return spec.hidden_size * spec.num_experts if spec.is_moe else 0


def linear_params_per_layer(spec: ModelSpec) -> int:
    """Weights of one decoder layer's matmuls held in memory (QKV, O, router, every expert's MLP)."""
    return attention_params_per_layer(spec) + router_params_per_layer(spec) + spec.num_experts * expert_params(spec)


def active_linear_params_per_layer(spec: ModelSpec) -> int:
    """Weights one token runs through in a layer: attention, router and experts_per_token MLPs."""
    return (attention_params_per_layer(spec) + router_params_per_layer(spec)
            + spec.experts_per_token * expert_params(spec))


def _embedding_params(spec: ModelSpec) -> int:
    return (1 if spec.name in TIED_EMBEDDINGS else 2) * spec.vocab_size * spec.hidden_size


def shape_param_count(spec: ModelSpec) -> int:
    """Parameter count implied by the shape: layers + embeddings (+ untied LM head)."""
    return spec.num_layers * linear_params_per_layer(spec) + _embedding_params(spec)


def shape_active_param_count(spec: ModelSpec) -> int:
    """Parameters one token runs through, implied by the shape (= shape_param_count for a dense model)."""
    return spec.num_layers * active_linear_params_per_layer(spec) + _embedding_params(spec)
