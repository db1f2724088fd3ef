"""Strict reading of a Hugging Face config.json (Llama, Mistral, Qwen2) into a ModelConfig: nothing guessed.

Both layouts transformers writes are read: the old one (top-level rope_theta / rope_scaling, torch_dtype)
and transformers 5's (rope_parameters, dtype). Every key is either consumed, known to leave the forward
pass unchanged (metadata, training and generation defaults), or refused by name with the file named.
A key that is absent takes the default transformers 5.23's config class gives it, and only where that
class has one that real checkpoints rely on (below); the shape-defining keys are required.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from tessera.runtime.config import (DTYPE_NAMES, FULL_ATTENTION, MODEL_TYPES, SLIDING_ATTENTION,
                                    SUPPORTED_ARCHITECTURES, ModelConfig, RopeScaling)
from tessera.runtime.errors import CheckpointError

REQUIRED = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "max_position_embeddings", "rms_norm_eps")
# Keys that leave logits unchanged: provenance, training-only settings, generation defaults (the engine
# takes sampling from each request, and stop ids from generation_config.json).
INERT_KEYS = frozenset("""
    _name_or_path transformers_version initializer_range use_cache output_attentions output_hidden_states
    return_dict torchscript use_bfloat16 tf_legacy_loss problem_type id2label label2id finetuning_task
    tokenizer_class prefix task_specific_params chunk_size_feed_forward is_decoder cross_attention_hidden_size
    tie_encoder_decoder decoder_start_token_id sep_token_id attention_dropout pretraining_tp
    max_length min_length do_sample early_stopping num_beams num_beam_groups diversity_penalty temperature
    top_k top_p typical_p repetition_penalty length_penalty no_repeat_ngram_size encoder_no_repeat_ngram_size
    bad_words_ids num_return_sequences output_scores return_dict_in_generate forced_bos_token_id
    forced_eos_token_id remove_invalid_values exponential_decay_length_penalty suppress_tokens
    begin_suppress_tokens _attn_implementation_autoset transformers.js_config
""".split())
# Inert only at these values; any other value changes the model.
MUST_BE = {"is_encoder_decoder": (False,), "add_cross_attention": (False,), "pruned_heads": ({}, None),
           "use_mrope": (False,), "partial_rotary_factor": (1.0, None), "hidden_act": ("silu",)}
CONSUMED = {
    "common": {"architectures", "model_type", "vocab_size", "hidden_size", "intermediate_size",
               "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim", "rms_norm_eps",
               "rope_theta", "rope_scaling", "rope_parameters", "max_position_embeddings",
               "tie_word_embeddings", "torch_dtype", "dtype", "bos_token_id", "eos_token_id", "pad_token_id"},
    "llama": {"attention_bias", "mlp_bias"},
    "mistral": {"sliding_window"},
    "qwen2": {"use_sliding_window", "sliding_window", "max_window_layers", "layer_types"},
}
# transformers 5.23 class defaults used for absent keys (LlamaConfig, MistralConfig, Qwen2Config).
DEFAULT_ROPE_THETA = 10000.0
MISTRAL_DEFAULT_WINDOW = 4096
QWEN2_DEFAULTS = {"use_sliding_window": False, "sliding_window": 4096, "max_window_layers": 28}
ROPE_KEYS = {  # per rope_type: (required, optional), as transformers' _validate_*_rope_parameters
    "default": ((), ()),
    "linear": (("factor",), ()),
    "dynamic": (("factor",), ()),
    "llama3": (("factor", "low_freq_factor", "high_freq_factor"), ("original_max_position_embeddings",)),
    "yarn": (("factor",), ("original_max_position_embeddings", "attention_factor", "beta_fast", "beta_slow",
                           "mscale", "mscale_all_dim", "truncate")),
}
REFUSED_HINTS = {"Gemma": "Gemma (GeGLU, scaled embeddings, soft-capping)", "Phi": "Phi (partial rotary, dense "
                 "biases)", "Mixtral": "Mixtral (mixture of experts)", "Moe": "a mixture-of-experts model",
                 "Qwen3": "Qwen3 (q/k norms)", "Falcon": "Falcon", "GPT": "a GPT-style model", "Olmo": "OLMo"}


def read_config_json(path: Path) -> ModelConfig:
    """Parse config.json at path; invalid JSON and every refused key raise CheckpointError naming the file."""
    if not path.exists():
        raise CheckpointError(f"{path} does not exist: a checkpoint folder needs a Hugging Face config.json")
    try:
        hf = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is not valid JSON ({err}); re-save the checkpoint's config.json") from None
    if not isinstance(hf, dict):
        raise CheckpointError(f"{path} holds a JSON {type(hf).__name__}, not an object of config keys")
    return parse_hf_config(hf, str(path))


def parse_hf_config(hf: dict[str, Any], source: str = "config.json") -> ModelConfig:
    arch = _architecture(hf, source)
    model_type = MODEL_TYPES[arch]
    _check_keys(hf, model_type, source)
    missing = [k for k in REQUIRED if hf.get(k) is None]
    if model_type == "mistral" and hf.get("num_key_value_heads") is None:
        missing.append("num_key_value_heads")
    if missing:
        raise CheckpointError(f"{source} lacks required key(s) {', '.join(missing)}: Tessera never fills a "
                              "shape or normalisation key with a default; add them from the model's original config")
    _check_values(hf, source)
    for key, allowed in MUST_BE.items():
        if key in hf and hf[key] not in allowed:
            raise CheckpointError(f"{source}: {key}={hf[key]!r} changes the model and is not supported "
                                  f"(supported: {', '.join(repr(a) for a in allowed)})")
    theta, scaling = _rope(hf, source)
    window, layer_types = _sliding_window(hf, model_type, source)
    bias = bool(hf.get("attention_bias", False))
    try:
        return ModelConfig(
            vocab_size=hf["vocab_size"], hidden_size=hf["hidden_size"], intermediate_size=hf["intermediate_size"],
            num_hidden_layers=hf["num_hidden_layers"], num_attention_heads=hf["num_attention_heads"],
            num_key_value_heads=hf.get("num_key_value_heads") or hf["num_attention_heads"],
            head_dim=hf.get("head_dim"), rms_norm_eps=float(hf["rms_norm_eps"]), rope_theta=theta,
            rope_scaling=scaling, max_position_embeddings=hf["max_position_embeddings"],
            tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)), torch_dtype=_dtype(hf, source),
            qkv_bias=model_type == "qwen2" or bias, o_proj_bias=bias, mlp_bias=bool(hf.get("mlp_bias", False)),
            sliding_window=window, layer_types=layer_types, bos_token_id=hf.get("bos_token_id"),
            eos_token_id=hf.get("eos_token_id"), pad_token_id=hf.get("pad_token_id"), architectures=[arch])
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"{source}: {err}") from None


POSITIVE_INTS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                 "num_key_value_heads", "head_dim", "max_position_embeddings", "sliding_window", "max_window_layers")
POSITIVE_FLOATS = ("rms_norm_eps", "rope_theta")


def _check_values(hf: dict, source: str) -> None:
    """Types and ranges of the keys that shape the model: a wrong one never reaches torch."""
    for key in POSITIVE_INTS:
        value = hf.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise CheckpointError(f"{source}: {key}={value!r} is invalid: use an integer >= 1")
    for key in POSITIVE_FLOATS:
        value = hf.get(key)
        if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)
                                  or not math.isfinite(value) or value <= 0):
            raise CheckpointError(f"{source}: {key}={value!r} is invalid: use a finite number > 0")


def _architecture(hf: dict, source: str) -> str:
    archs = hf.get("architectures")
    if not archs:
        by_type = {v: k for k, v in MODEL_TYPES.items()}
        if hf.get("model_type") in by_type:
            return by_type[hf["model_type"]]
        raise CheckpointError(f"{source} names no architectures and model_type={hf.get('model_type')!r}: "
                              f"set architectures to one of {list(SUPPORTED_ARCHITECTURES)}")
    if len(archs) != 1 or archs[0] not in SUPPORTED_ARCHITECTURES:
        hint = next((v for k, v in REFUSED_HINTS.items() if any(k in a for a in archs)), None)
        what = f" ({hint} is not implemented)" if hint else ""
        raise CheckpointError(f"{source}: architectures={archs}{what}; Tessera's runtime loads "
                              f"{', '.join(SUPPORTED_ARCHITECTURES)} checkpoints only")
    arch = archs[0]
    if hf.get("model_type") not in (None, MODEL_TYPES[arch]):
        raise CheckpointError(f"{source}: model_type={hf['model_type']!r} does not match architectures={archs} "
                              f"(expected {MODEL_TYPES[arch]!r})")
    return arch


def _check_keys(hf: dict, model_type: str, source: str) -> None:
    known = CONSUMED["common"] | CONSUMED[model_type] | INERT_KEYS | set(MUST_BE)
    unknown = sorted(k for k in hf if k not in known)
    if unknown:
        if "quantization_config" in unknown:
            raise CheckpointError(f"{source}: quantization_config is set; quantized checkpoints (GPTQ, AWQ, "
                                  "bitsandbytes, ...) are not supported: use the unquantized weights")
        raise CheckpointError(f"{source}: key(s) {', '.join(unknown)} not understood by Tessera's {model_type} "
                              "loader and they may change what the model computes; remove them only if you know "
                              "they do not (Tessera refuses rather than guesses)")


def _dtype(hf: dict, source: str) -> str | None:
    names = {k: hf[k] for k in ("torch_dtype", "dtype") if hf.get(k) is not None}
    if len(set(names.values())) > 1:
        raise CheckpointError(f"{source}: torch_dtype={names['torch_dtype']!r} and dtype={names['dtype']!r} "
                              "disagree; keep one")
    value = next(iter(names.values()), None)
    if value is not None and value not in DTYPE_NAMES:
        raise CheckpointError(f"{source}: dtype {value!r} is not supported; use one of {list(DTYPE_NAMES)}")
    return value


def _rope(hf: dict, source: str) -> tuple[float, RopeScaling | None]:
    params, scaling = hf.get("rope_parameters"), hf.get("rope_scaling")
    if params and scaling:
        raise CheckpointError(f"{source} has both rope_parameters (transformers 5) and rope_scaling (older "
                              "layout); keep one")
    d = dict(params or scaling or {})
    if not isinstance(params or scaling or {}, dict) or any(isinstance(v, dict) for v in d.values()):
        raise CheckpointError(f"{source}: rope parameters per layer type are not supported (one RoPE for all "
                              "layers only)")
    theta = d.pop("rope_theta", None) or hf.get("rope_theta") or DEFAULT_ROPE_THETA
    rope_type = d.pop("rope_type", None) or d.pop("type", None) or "default"
    d.pop("type", None)
    if d.pop("partial_rotary_factor", 1.0) not in (1.0, None):
        raise CheckpointError(f"{source}: partial_rotary_factor != 1 is not supported")
    if rope_type not in ROPE_KEYS:
        raise CheckpointError(f"{source}: rope_type {rope_type!r} is not supported; Tessera implements "
                              f"{', '.join(ROPE_KEYS)} (as transformers does for these architectures)")
    required, optional = ROPE_KEYS[rope_type]
    absent = [k for k in required if k not in d]
    extra = sorted(set(d) - set(required) - set(optional))
    if absent or extra:
        raise CheckpointError(f"{source}: rope_type {rope_type!r} needs {list(required)} and accepts "
                              f"{list(optional)}; missing {absent}, not understood {extra}")
    if rope_type == "default":
        return float(theta), None
    if rope_type in ("llama3", "yarn") and d.get("original_max_position_embeddings") is None:
        # transformers' standardize_rope_params: the top-level key, else max_position_embeddings
        d["original_max_position_embeddings"] = hf.get("original_max_position_embeddings",
                                                       hf["max_position_embeddings"])
    if rope_type == "yarn" and d["factor"] is None:
        d["factor"] = hf["max_position_embeddings"] / d["original_max_position_embeddings"]
    try:
        return float(theta), RopeScaling(rope_type=rope_type, **d)
    except TypeError as err:
        raise CheckpointError(f"{source}: rope parameters: {err}") from None


def _sliding_window(hf: dict, model_type: str, source: str) -> tuple[int | None, list[str] | None]:
    if model_type == "llama":
        return None, None
    max_pos = hf["max_position_embeddings"]
    if model_type == "mistral":
        window = hf.get("sliding_window", MISTRAL_DEFAULT_WINDOW)
        # a window no shorter than the context never binds: the engine serves no longer sequence
        return (None if window is None or window >= max_pos else int(window)), None
    q = {k: hf.get(k, v) for k, v in QWEN2_DEFAULTS.items()}
    window = q["sliding_window"] if q["use_sliding_window"] else None
    if window is None or window >= max_pos:
        return None, None
    layer_types = hf.get("layer_types") or [SLIDING_ATTENTION if i >= q["max_window_layers"] else FULL_ATTENTION
                                             for i in range(hf["num_hidden_layers"])]
    return int(window), list(layer_types)
