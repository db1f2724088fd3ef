"""What a page budget B means for each KV policy, and the optional profiled head list.

B is the number of 16-token pages a sparse head attends per decode step: quest / flexicache /
flexicache_adaptive attend their top-B pages (the current page included); streaming keeps 1 sink page
plus a window of B - 1 pages (the current page included); head_split's streaming heads the same sink +
window while its retrieval heads stay full; `full` ignores B. Prefill is dense under every policy.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from tessera.kernels.layout import PAGE_SIZE
from tessera.kvcache.config import HeadSplitConfig
from tessera.kvcache.head_lists import heads_mask
from tessera.kvcache.policies import HeadSplitPolicy
from tessera.runtime.engine import build_policy
from tessera.types import ModelSpec

TOPK_POLICIES = ("quest", "flexicache", "flexicache_adaptive")
WINDOW_POLICIES = ("streaming", "head_split")
POLICIES = ("full",) + TOPK_POLICIES + WINDOW_POLICIES


def policy_params(name: str, budget: int) -> dict:
    """kvpolicy parameters that make policy `name` attend `budget` pages per sparse head."""
    if name not in POLICIES:
        raise ValueError(f"policy {name!r} is unknown: use one of {', '.join(POLICIES)}")
    if budget < 2:
        raise ValueError(f"budget={budget} pages: use >= 2 (the current page plus one)")
    if name in TOPK_POLICIES:
        return {"topk_pages": budget}
    if name in WINDOW_POLICIES:
        return {"sink_tokens": PAGE_SIZE, "window_tokens": (budget - 1) * PAGE_SIZE}
    return {}


def load_head_list(path: str | Path) -> list[tuple[int, int]]:
    """(layer, kv_head) pairs from a JSON file (a list of pairs or of {"layer", "kv_head"} objects, or an
    object holding one such list) or a CSV/TSV file (columns layer and kv_head, or two unnamed int columns)."""
    path = Path(path)
    text = path.read_text()
    if path.suffix == ".json":
        data = json.loads(text)
        if isinstance(data, dict):
            lists = [v for v in data.values() if isinstance(v, list)]
            if len(lists) != 1:
                raise ValueError(f"{path}: a JSON object must hold exactly one list of heads")
            data = lists[0]
        return [(int(h["layer"]), int(h.get("kv_head", h.get("head")))) if isinstance(h, dict) else
                (int(h[0]), int(h[1])) for h in data]
    delimiter = "\t" if "\t" in text.splitlines()[0] else ","
    rows = [r for r in csv.reader(text.splitlines(), delimiter=delimiter) if r and not r[0].startswith("#")]
    header = [c.strip().lower() for c in rows[0]]
    if "layer" in header:
        li = header.index("layer")
        hi = header.index("kv_head") if "kv_head" in header else header.index("head")
        return [(int(r[li]), int(r[hi])) for r in rows[1:]]
    return [(int(r[0]), int(r[1])) for r in rows]


def make_policy_for(name: str, budget: int, spec: ModelSpec, heads: list[tuple[int, int]] | None = None,
                    seed: int = 0, retrieval_fraction: float = 0.5, extra: dict | None = None):
    """The KV policy object at this budget. heads (a profiled list): head_split's retrieval heads and
    flexicache's unstable heads; without it head_split takes seeded random gates (retrieval_fraction of
    the heads) and flexicache the synthetic unstable class (build_policy's defaults). extra: more flexicache
    parameters (rerank_interval)."""
    params = policy_params(name, budget)
    shape = (spec.num_layers, spec.num_kv_heads)
    if name == "head_split":
        if heads is None:
            gates = np.random.default_rng(seed).random(shape)
            fraction = retrieval_fraction
        else:
            gates = heads_mask(heads, shape).astype(float)
            fraction = gates.sum() / gates.size
        return HeadSplitPolicy(spec, HeadSplitConfig(retrieval_fraction=fraction, **params), gate_values=gates)
    if name == "flexicache" and heads is not None:
        params["unstable_heads"] = [list(h) for h in heads]
    if name == "flexicache" and extra:  # e.g. the rerank-interval sweep
        params.update(extra)
    return build_policy(name, spec, params, seed)
