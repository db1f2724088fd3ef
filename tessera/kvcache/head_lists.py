"""Shipped head classifications: FlexiCache's unstable heads and DuoAttention's retrieval heads.

Files live under data/flexicache/ and data/duoattention-head-patterns/ (each with its SOURCE.md).
"""
from __future__ import annotations

import numpy as np

from tessera.paths import data_dir, data_path

# Catalog model name -> shipped FlexiCache profile (flexicache.md §1.3: gov_report, K = 64 pages).
_UNSTABLE_FILES = {
    "Llama-3.1-8B": "unstable_heads_Llama-3.1-8B_gov_report_k64.tsv",
    "Llama-3.1-8B-Instruct": "unstable_heads_Llama-3.1-8B_gov_report_k64.tsv",
}
# Catalog model name -> DuoAttention pattern folder (the instruct model of the same weights family).
_DUO_FOLDERS = {
    "Llama-3.1-8B": "Meta-Llama-3.1-8B-Instruct",
    "Llama-3.1-8B-Instruct": "Meta-Llama-3.1-8B-Instruct",
    "Mistral-7B-v0.2": "Mistral-7B-Instruct-v0.2",
    "Llama-2-7B": "Llama-2-7B-32K-Instruct",  # a long-context fine-tune of the same weights' shape
    "Llama-3-8B": "Llama-3-8B-Instruct-Gradient-1048k",
}


def shipped_unstable_heads(model_name: str) -> tuple[tuple[int, int], ...]:
    """The paper's profiled unstable (layer, kv_head) list for `model_name`."""
    if model_name not in _UNSTABLE_FILES:
        raise KeyError(f"no shipped FlexiCache unstable-head list for {model_name!r} (shipped: "
                       f"{', '.join(_UNSTABLE_FILES)}); profile one with tessera.kvcache.stability."
                       "profile_unstable_heads, pass unstable_heads=..., or use unstable_source='synthetic'")
    table = np.loadtxt(data_path("flexicache", _UNSTABLE_FILES[model_name]), dtype=np.int64, skiprows=1, ndmin=2)
    return tuple((int(l), int(h)) for l, h in table)


def duo_gate_values(model_name: str, pattern_model: str | None = None) -> np.ndarray:
    """DuoAttention's learned gate per (layer, kv_head): high = retrieval head."""
    folder = pattern_model or _DUO_FOLDERS.get(model_name)
    if folder is None:
        known = sorted(p.name for p in (data_dir() / "duoattention-head-patterns").iterdir() if p.is_dir())
        raise KeyError(f"no DuoAttention head pattern mapped to {model_name!r}; set pattern_model to one of "
                       f"{', '.join(known)}")
    return np.loadtxt(data_path("duoattention-head-patterns", folder, "full_attention_heads.tsv"), ndmin=2)


def top_fraction(values: np.ndarray, fraction: float) -> np.ndarray:
    """Bool mask of the round(fraction x size) largest values (ties broken by flat index)."""
    count = int(round(fraction * values.size))
    order = np.argsort(-values.ravel(), kind="stable")
    mask = np.zeros(values.size, dtype=bool)
    mask[order[:count]] = True
    return mask.reshape(values.shape)


def heads_mask(pairs, shape: tuple[int, int]) -> np.ndarray:
    """Bool [layers, kv_heads] from (layer, kv_head) pairs, checked against the model's shape."""
    mask = np.zeros(shape, dtype=bool)
    for layer, head in pairs:
        if not (0 <= layer < shape[0] and 0 <= head < shape[1]):
            raise ValueError(f"head ({layer}, {head}) is outside the model's {shape[0]} layers x {shape[1]} KV heads")
        mask[layer, head] = True
    return mask
