"""The MoA expert stage as a plain serving workload: one model's prompts, for single-model experiments.

Lets any serving experiment (e.g. every KV policy) run on the long-generation prompts of a MoA expert:
`workload: {kind: moa, dataset: gpqa, expert: DeepSeek-R1-Distill-Llama-8B}`.
"""
from __future__ import annotations

from dataclasses import replace

from tessera.types import Request
from tessera.workload.moa import generate_moa_workload
from tessera.workload.moa_defaults import DATASETS, MoAConfig


def moa_expert_requests(dataset: str = "mmlu_pro", expert: str | None = None, num_queries: int | None = None,
                        seed: int = 0, arrival_rate: float | None = None) -> list[Request]:
    """Stage-1 prompts of `dataset` routed to `expert` (None: all experts), renumbered 0..n-1.

    The model name is dropped so a single-model cluster serves them; arrivals are all at 0 s (the MoA
    batch) unless arrival_rate (requests/s) spaces them evenly.
    """
    if dataset not in DATASETS:
        raise ValueError(f"dataset={dataset!r} is unknown: use one of {sorted(DATASETS)}")
    if num_queries is not None and num_queries < 1:
        raise ValueError(f"num_queries={num_queries} is invalid: use >= 1 or None for the dataset's count")
    config = MoAConfig(datasets=(dataset,), num_queries={dataset: num_queries} if num_queries else None)
    requests = [r for r in generate_moa_workload(config, seed).expert_requests()
                if expert is None or r.model == expert]
    if not requests:
        raise ValueError(f"no {dataset} prompt is routed to expert={expert!r}; pick an expert of the pool "
                         "(e.g. DeepSeek-R1-Distill-Llama-8B) or more queries")
    step = 0.0 if arrival_rate is None else 1.0 / arrival_rate
    return [replace(r, request_id=i, model=None, arrival_s=i * step) for i, r in enumerate(requests)]
