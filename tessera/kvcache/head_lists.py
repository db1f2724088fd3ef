"""Shipped head classifications: FlexiCache's unstable heads and DuoAttention's retrieval heads.

Files live under data/flexicache/ and data/duoattention-head-patterns/ (each with its SOURCE.md). A
model profiled by Tessera's runtime (tessera.runtime.profiling.head_stability) carries its own list as
`head_stability.tsv` in its checkpoint folder, in the same TSV format as data/flexicache/: a header line
`layer<TAB>kv_head`, then one unstable (layer, kv_head) pair per line. Lookup by model name tries the
paper's lists, then the runtime profiles shipped in data/ (SmolLM2: data/smollm2-head-stability/, under
both its simulator name and its checkpoint folder name), then models/<name>/head_stability.tsv, so the
simulator and the runtime (which both ask by name) read the same file.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tessera.paths import REPO_ROOT, data_dir, data_path

HEAD_STABILITY_FILE = "head_stability.tsv"  # a checkpoint folder's own unstable-head list
MODELS_DIR = REPO_ROOT / "models"  # checkpoint folders searched by model name

# Catalog model name -> shipped FlexiCache profile (flexicache.md §1.3: gov_report, K = 64 pages).
_UNSTABLE_FILES = {
    "Llama-3.1-8B": "unstable_heads_Llama-3.1-8B_gov_report_k64.tsv",
    "Llama-3.1-8B-Instruct": "unstable_heads_Llama-3.1-8B_gov_report_k64.tsv",
}
# Model name -> a data/ folder holding a runtime profile (head_stability.tsv; the folder's SOURCE.md says how).
# Both names of a model: the simulator's (conf/model/*.yaml name) and the runtime's (checkpoint folder name).
_PROFILED_DIRS = {
    "SmolLM2-135M-Instruct": "smollm2-head-stability",
    "smollm2-135m-instruct": "smollm2-head-stability",
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
    """The profiled unstable (layer, kv_head) list for `model_name`: the paper's (data/flexicache/), else
    a runtime profile shipped in data/ (_PROFILED_DIRS), else the one in the checkpoint folder
    models/<model_name>/head_stability.tsv (runtime profiling)."""
    if model_name in _UNSTABLE_FILES:
        return load_unstable_heads(data_path("flexicache", _UNSTABLE_FILES[model_name]))
    profiled = _profiled_file(model_name)
    if profiled is not None:
        return load_unstable_heads(profiled)
    own = MODELS_DIR / model_name / HEAD_STABILITY_FILE
    if model_name and own.is_file():
        return load_unstable_heads(own)
    raise KeyError(f"no shipped FlexiCache unstable-head list for {model_name!r} (shipped: "
                   f"{', '.join([*_UNSTABLE_FILES, *_PROFILED_DIRS])}, or models/<name>/{HEAD_STABILITY_FILE}); "
                   "profile one with "
                   "python -m tessera.runtime.profiling.head_stability, pass unstable_heads=..., or use "
                   "unstable_source='synthetic'")


def _profiled_file(model_name: str) -> Path | None:
    """The data/ runtime profile of `model_name`, if one is mapped and present."""
    if model_name not in _PROFILED_DIRS:
        return None
    path = data_dir() / _PROFILED_DIRS[model_name] / HEAD_STABILITY_FILE
    return path if path.is_file() else None


def unstable_list_source(model_name: str) -> str:
    """Where shipped_unstable_heads(model_name) reads from, for run metadata."""
    if model_name in _UNSTABLE_FILES:
        return f"shipped (paper profile, data/flexicache/{_UNSTABLE_FILES[model_name]})"
    if _profiled_file(model_name) is not None:
        return f"profiled (runtime profile, data/{_PROFILED_DIRS[model_name]}/{HEAD_STABILITY_FILE})"
    return f"profiled (models/{model_name}/{HEAD_STABILITY_FILE})"


def checkpoint_unstable_heads(folder: str | Path) -> tuple[tuple[int, int], ...]:
    """The unstable-head list a checkpoint folder carries (its head_stability.tsv)."""
    path = Path(folder) / HEAD_STABILITY_FILE
    if not path.is_file():
        raise KeyError(f"{folder} has no {HEAD_STABILITY_FILE}; write one with python -m "
                       f"tessera.runtime.profiling.head_stability --model {folder} --write-to-checkpoint")
    return load_unstable_heads(path)


def load_unstable_heads(path: str | Path) -> tuple[tuple[int, int], ...]:
    """(layer, kv_head) pairs of an unstable-head TSV (header line, then `layer<TAB>kv_head` rows)."""
    table = np.loadtxt(path, dtype=np.int64, skiprows=1, ndmin=2)
    if table.size and table.shape[1] != 2:
        raise ValueError(f"{path}: expected two columns (layer, kv_head), got {table.shape[1]}")
    return tuple((int(l), int(h)) for l, h in table.reshape(-1, 2))


def save_unstable_heads(path: str | Path, heads) -> None:
    """Write (layer, kv_head) pairs in the TSV format load_unstable_heads reads (sorted)."""
    rows = "".join(f"{int(l)}\t{int(h)}\n" for l, h in sorted(heads))
    Path(path).write_text("layer\tkv_head\n" + rows)


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
