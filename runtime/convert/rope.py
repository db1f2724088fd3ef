"""RoPE scaling of a GGUF as HF `rope_scaling`: from llama.cpp's rope.scaling.* keys or Llama-3 rope_freqs.

What is not understood is refused by name, never dropped: a silently lost scaling changes every logit.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from tessera.runtime.convert.errors import ConversionError

# Llama 3.1/3.2 values; rope_freqs carries only the resulting factors, so these are tried first.
LLAMA3_DEFAULTS = {"low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
# llama.cpp keys (after "{arch}.rope.scaling.") that carry no information when they hold these values
NEUTRAL_YARN_VALUES = {"attn_factor": 1.0, "yarn_attn_factor": 1.0, "yarn_log_multiplier": 0.0, "yarn_ext_factor": -1.0}


def rope_scaling_from_metadata(values: dict[str, object], arch: str, path: Path) -> dict | None:
    """HF rope_scaling for the `{arch}.rope.scaling.*` keys (suffix -> value), None when unscaled."""
    kind = str(values.get("type", "none"))
    known = {"type", "factor", "original_context_length", "finetuned"}
    if kind == "none":
        extra = sorted(set(values) - known)
        if extra:
            raise _not_understood(arch, extra, "rope.scaling.type is none", path)
        return None
    if "factor" not in values:
        raise ConversionError(f"{path}: {arch}.rope.scaling.type={kind!r} but {arch}.rope.scaling.factor is missing")
    factor = clean_float(values["factor"])
    if kind == "linear":
        extra = sorted(set(values) - known - {"original_context_length"})
        if extra:
            raise _not_understood(arch, extra, "linear scaling", path)
        return {"rope_type": "linear", "factor": factor}
    if kind == "yarn":
        scaling = {"rope_type": "yarn", "factor": factor}
        if "original_context_length" in values:
            scaling["original_max_position_embeddings"] = int(values["original_context_length"])
        if "yarn_beta_fast" in values:
            scaling["beta_fast"] = clean_float(values["yarn_beta_fast"])
        if "yarn_beta_slow" in values:
            scaling["beta_slow"] = clean_float(values["yarn_beta_slow"])
        mapped = known | {"yarn_beta_fast", "yarn_beta_slow"}
        # llama.cpp's attention-factor knobs have no one-to-one HF field; neutral values are safe to drop
        odd = sorted(k for k in set(values) - mapped
                     if k not in NEUTRAL_YARN_VALUES or not math.isclose(float(values[k]), NEUTRAL_YARN_VALUES[k]))
        if odd:
            raise _not_understood(arch, odd, "yarn scaling", path)
        return scaling
    raise ConversionError(
        f"{path}: {arch}.rope.scaling.type={kind!r} is not supported; tessera-convert maps 'none', 'linear', "
        "'yarn' and Llama-3 rope_freqs factors"
    )


def llama3_scaling_from_rope_freqs(factors: np.ndarray, rope_theta: float, head_dim: int, path: Path) -> dict | None:
    """Recover Llama-3 `rope_scaling` from llama.cpp's per-frequency factors (rope_freqs.weight).

    Only the ratios original_max_position_embeddings / low_freq_factor and / high_freq_factor shape
    the factors, so low_freq_factor=1 is assumed when the standard Llama-3 values do not reproduce them.
    Tessera and transformers then compute inv_freq / factor from config.json exactly as llama.cpp does.
    """
    factors = np.asarray(factors, dtype=np.float64).reshape(-1)
    if factors.shape != (head_dim // 2,):
        raise ConversionError(
            f"{path}: tensor rope_freqs.weight has {factors.size} values, expected head_dim/2 = {head_dim // 2}"
        )
    if np.allclose(factors, 1.0):
        return None
    factor = float(factors.max())
    candidates = [{"factor": factor, **LLAMA3_DEFAULTS}]
    fitted = _fit_llama3(factors, factor, rope_theta, head_dim)
    if fitted is not None:
        candidates.append(fitted)
    for candidate in candidates:
        candidate = {k: clean_float(v) if isinstance(v, float) else v for k, v in candidate.items()}
        if np.allclose(llama3_factors(candidate, rope_theta, head_dim), factors, rtol=1e-4, atol=1e-6):
            return {"rope_type": "llama3", **candidate}
    raise ConversionError(
        f"{path}: tensor rope_freqs.weight holds RoPE frequency factors that match no Llama-3 scaling "
        f"(factors {np.round(factors, 4).tolist()}); tessera-convert supports only Llama-3 style rope_freqs"
    )


def llama3_factors(scaling: dict, rope_theta: float, head_dim: int) -> np.ndarray:
    """The per-frequency factors llama.cpp's convert_hf_to_gguf.py stores for a Llama-3 `scaling`:
    1 for short wavelengths, `factor` for long ones, the reciprocal of the smooth blend in between."""
    inv_freq = 1.0 / rope_theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    wavelen = 2 * math.pi / inv_freq
    original, factor = scaling["original_max_position_embeddings"], scaling["factor"]
    low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
    smooth = (original / wavelen - low) / (high - low)
    blended = 1 / ((1 - smooth) / factor + smooth)
    return np.where(wavelen < original / high, 1.0, np.where(wavelen > original / low, factor, blended))


def _fit_llama3(factors: np.ndarray, factor: float, rope_theta: float, head_dim: int) -> dict | None:
    # In the blended band 1/f = (1 - s)/factor + s with s linear in 1/wavelength: a least-squares line
    # through those points gives original_max_position_embeddings and high_freq_factor (low fixed at 1).
    inv_freq = 1.0 / rope_theta ** (np.arange(0, head_dim, 2) / head_dim)
    blended = (factors > 1 + 1e-6) & (factors < factor - 1e-6)
    if blended.sum() < 2 or factor <= 1:
        return None
    s = (1 / factors[blended] - 1 / factor) / (1 - 1 / factor)
    x = inv_freq[blended] / (2 * math.pi)
    a, b = np.polyfit(x, s, 1)
    if b >= 0:
        return None
    original = -a / b
    high = 1 - 1 / b
    return {"factor": factor, "low_freq_factor": 1.0, "high_freq_factor": round(float(high), 4),
            "original_max_position_embeddings": int(round(original))}


def _not_understood(arch: str, keys: list[str], context: str, path: Path) -> ConversionError:
    names = ", ".join(f"{arch}.rope.scaling.{k}" for k in keys)
    return ConversionError(f"{path}: {names} not understood with {context}; tessera-convert refuses rather than drop it")


def clean_float(value) -> float:
    """The shortest decimal of a float32 metadata value (1e-05, not 9.999999747378752e-06)."""
    return float(np.format_float_positional(np.float32(value), unique=True, trim="-"))
