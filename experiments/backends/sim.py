"""The simulator backend: builds cost models and a Cluster from a RunSpec and replays requests through it.

Returns the shared results tables (requests, KV usage, per-worker counters).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import pandas as pd

from tessera.cost import make_cost_model
from tessera.experiments.config import ConfigError
from tessera.experiments.resolve import RunSpec
from tessera.hardware import host_link
from tessera.sim import Cluster, kv_usage_frame, make_router, request_frame, worker_frame
from tessera.types import Request, WorkerSpec


@dataclass
class BackendResult:
    requests: pd.DataFrame
    kv_usage: pd.DataFrame
    workers: pd.DataFrame


def cost_model_for(spec: RunSpec):
    cache: dict = {}

    def build(worker: WorkerSpec):
        key = (worker.model.name, worker.gpu.name, worker.tp)
        if key not in cache:
            try:
                cache[key] = make_cost_model(spec.cost_kind, worker.model, worker.gpu, worker.tp, **spec.cost_params)
            except (KeyError, ValueError, TypeError, FileNotFoundError) as err:
                raise ConfigError(f"backend.cost: cannot build a {spec.cost_kind!r} cost model for {key[0]} on "
                                  f"{key[2]} x {key[1]}: {err} (or use backend=sim_roofline)") from None
        return cache[key]
    return build


def run_sim(spec: RunSpec, requests: Sequence[Request], *, fast_forward: bool = True,
            progress: bool = False) -> BackendResult:
    try:
        cluster = Cluster(spec.workers, cost_model_for(spec), spec.scheduler, spec.memory, make_router(spec.router),
                          host_link=host_link(spec.gpu), progress=progress, fast_forward=fast_forward)
    except MemoryError as err:
        raise ConfigError(f"cluster/model: {err}") from None
    run = cluster.run(requests)
    return BackendResult(requests=request_frame(run), kv_usage=kv_usage_frame(run), workers=worker_frame(run))
