"""Rotary position embedding frequencies for every RoPE type the runtime loads, as transformers computes them.

`rope_parameters(config)` gives the inverse frequencies (D/2,) in float32 and the factor cos/sin are
multiplied by (1 except for YaRN). Formulas follow transformers 5.23's modeling_rope_utils; the tests
compare logits with transformers for each type.
"""
from __future__ import annotations

import math

import torch

from tessera.runtime.config import ModelConfig, RopeScaling


def rope_parameters(config: ModelConfig, device: torch.device | str | None = None) -> tuple[torch.Tensor, float]:
    """(inv_freq (D/2,) float32, attention_scaling) of the model's RoPE."""
    D = config.head_dim
    inv_freq = _base_inv_freq(config.rope_theta, D, device)
    s = config.rope_scaling
    if s is None or s.rope_type == "dynamic":
        # dynamic NTK rescales only once a sequence passes max_position_embeddings, which the engine refuses
        return inv_freq, 1.0
    if s.rope_type == "linear":
        return inv_freq / s.factor, 1.0
    if s.rope_type == "llama3":
        return llama3_scale_inv_freq(inv_freq, s), 1.0
    if s.rope_type == "yarn":
        return _yarn(config.rope_theta, D, s, device)
    raise ValueError(f"rope_type {s.rope_type!r} has no implementation")


def _base_inv_freq(theta: float, D: int, device) -> torch.Tensor:
    exponents = torch.arange(0, D, 2, dtype=torch.int64, device=device).float() / D
    return 1.0 / (theta**exponents)


def llama3_scale_inv_freq(inv_freq: torch.Tensor, s: RopeScaling) -> torch.Tensor:
    """Llama 3.1 rule: keep short wavelengths, divide long ones by `factor`, blend in between."""
    low_freq_wavelen = s.original_max_position_embeddings / s.low_freq_factor
    high_freq_wavelen = s.original_max_position_embeddings / s.high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_freq_wavelen, inv_freq / s.factor, inv_freq)
    smooth = (s.original_max_position_embeddings / wavelen - s.low_freq_factor) / (
        s.high_freq_factor - s.low_freq_factor
    )
    blended = (1 - smooth) * scaled / s.factor + smooth * scaled
    is_medium = (wavelen >= high_freq_wavelen) & (wavelen <= low_freq_wavelen)
    return torch.where(is_medium, blended, scaled)


def yarn_attention_factor(s: RopeScaling) -> float:
    """YaRN's cos/sin multiplier: given, or 0.1 ln(factor) + 1 (ratio of two such terms with mscale)."""
    if s.attention_factor is not None:
        return float(s.attention_factor)

    def mscale(scale: float, m: float = 1.0) -> float:
        return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

    if s.mscale and s.mscale_all_dim:
        return float(mscale(s.factor, s.mscale) / mscale(s.factor, s.mscale_all_dim))
    return mscale(s.factor)


def _yarn(theta: float, D: int, s: RopeScaling, device) -> tuple[torch.Tensor, float]:
    """NTK-by-parts: dimensions rotating fewer than beta_slow times over the original context are
    interpolated (/ factor), those rotating more than beta_fast times kept, a linear ramp between."""
    beta_fast, beta_slow = s.beta_fast or 32, s.beta_slow or 1
    original = s.original_max_position_embeddings

    def correction_dim(num_rotations: float) -> float:
        return (D * math.log(original / (num_rotations * 2 * math.pi))) / (2 * math.log(theta))

    low, high = correction_dim(beta_fast), correction_dim(beta_slow)
    if s.truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, D - 1)
    if low == high:
        high += 0.001  # as transformers: avoid a zero-width ramp
    pos_freqs = theta ** (torch.arange(0, D, 2, device=device).float() / D)
    extrapolation, interpolation = 1.0 / pos_freqs, 1.0 / (s.factor * pos_freqs)
    ramp = torch.clamp((torch.arange(D // 2, dtype=torch.float32, device=device) - low) / (high - low), 0, 1)
    keep = 1 - ramp  # share of the unscaled (extrapolated) frequency
    return interpolation * (1 - keep) + extrapolation * keep, yarn_attention_factor(s)
