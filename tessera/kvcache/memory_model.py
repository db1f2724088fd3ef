"""Analytic GPU KV memory of one request vs its sequence length, per policy (experiment 1's numbers).

Steady state right after a rerank has landed: OFFLOAD heads hold K pages (+ `tail_tokens` of tail),
the other heads follow their mode; MinMax metadata (512 B per page per head for 128-dim bf16 keys)
is reported separately so the figure can be drawn with and without it.
"""
from __future__ import annotations

import pandas as pd

from tessera.kvcache.head_plan import HeadMode, HeadPlan
from tessera.kvcache.policies import make_policy
from tessera.models import model as model_spec

DEFAULT_SEQ_LENS = (1_024, 2_048, 4_096, 8_192, 10_000, 16_384, 20_000, 32_768, 65_536, 131_072)
_POLICY_PARAMS = {  # budget-bearing parameters per policy, filled from topk_tokens
    "full": lambda k, model: {},
    "quest": lambda k, model: {"topk_pages": k},
    "streaming": lambda k, model: {"sink_tokens": 16, "window_tokens": 16 * k - 16},
    "head_split": lambda k, model: {},
    "flexicache": lambda k, model: {"topk_pages": k,
                                    "unstable_source": "shipped" if model.startswith("Llama-3.1-8B") else "synthetic"},
    "flexicache_adaptive": lambda k, model: {"topk_pages": k},
}


def device_pages(plan: HeadPlan, num_tokens: int, tail_tokens: int = 0) -> int:
    """Pages (of one layer-head each) a request of num_tokens holds on device in steady state."""
    g = plan.geometry
    n = g.num_pages(num_tokens)
    offload_pages = min(n, plan.topk_pages + g.num_pages(tail_tokens))
    window_pages = min(n, plan.sink_pages + plan.window_pages)
    return ((plan.count(HeadMode.FULL) + plan.count(HeadMode.RESIDENT_TOPK)) * n
            + plan.count(HeadMode.WINDOW) * window_pages + plan.count(HeadMode.OFFLOAD) * offload_pages)


def minmax_bytes(plan: HeadPlan, num_tokens: int) -> int:
    g = plan.geometry
    return plan.keeps_minmax * g.num_heads_total * (num_tokens // g.page_tokens) * g.minmax_bytes_per_page


def gpu_kv_memory_table(models=("Llama-3.1-8B", "Mistral-7B-v0.2"), seq_lens=DEFAULT_SEQ_LENS,
                        topk_tokens: int = 1024, tail_tokens: int = 0, policies=tuple(_POLICY_PARAMS)) -> pd.DataFrame:
    """One row per (model, policy, seq_len): device KV bytes, MinMax bytes, and savings vs full KV."""
    rows = []
    for name in models:
        spec = model_spec(name)
        for policy in policies:
            plan = make_policy(policy, spec, **_POLICY_PARAMS[policy](topk_tokens // 16, name)).plan
            for seq_len in seq_lens:
                full = plan.geometry.num_heads_total * plan.geometry.num_pages(seq_len) * plan.geometry.page_bytes
                kv = device_pages(plan, seq_len, tail_tokens) * plan.geometry.page_bytes
                mm = minmax_bytes(plan, seq_len)
                rows.append({"model": name, "policy": policy, "seq_len": seq_len, "kv_bytes": kv,
                             "minmax_bytes": mm, "full_kv_bytes": full,
                             "saving_kv_only": 1 - kv / full, "saving_with_minmax": 1 - (kv + mm) / full})
    return pd.DataFrame(rows)
