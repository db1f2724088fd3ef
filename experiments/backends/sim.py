"""The simulator backend: builds cost models and a Cluster from a RunSpec and replays requests through it.

Returns the shared results tables (requests, KV usage, per-worker counters).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import pandas as pd

from tessera.cost import make_cost_model
from tessera.cost.engine_cost import with_engine_profile
from tessera.cost.pipeline import pipelined
from tessera.experiments.config import ConfigError
from tessera.experiments.resolve import RunSpec
from tessera.hardware import host_link, peer_link
from tessera.sim import Cluster, kv_usage_frame, make_router, request_frame, worker_frame
from tessera.sim.batch_log import enable_batch_log
from tessera.sim.kv_setup import KVSetup
from tessera.sim.records import batch_frame, transfer_frame
from tessera.types import Request, WorkerSpec
from tessera.workload.frontend import as_client_sees, through_frontend


@dataclass
class BackendResult:
    requests: pd.DataFrame
    kv_usage: pd.DataFrame
    workers: pd.DataFrame
    kv: dict = field(default_factory=dict)  # KV-policy counters (PCIe bytes, stalls, host peak); empty for full KV
    kv_requests: pd.DataFrame | None = None  # per request: h2d/d2h bytes, stall time, reloads
    batches: pd.DataFrame | None = None  # one row per iteration per worker (run_sim(batch_log=True))
    transfers: pd.DataFrame | None = None  # one row per KV copy on a host link (run_sim(batch_log=True))


def kv_results(run, frame: pd.DataFrame) -> tuple[dict, pd.DataFrame | None]:
    """Run-level KV counters summed over workers, per-request copy/stall stats, and bytes_moved filled in."""
    managers = [w.kv for w in run.workers if w.kv is not None]
    if not managers:
        return {}, None
    stats = [m.run_stats() for m in managers]
    totals = {key: (sum(s[key] for s in stats) if key.endswith(("_bytes", "_s", "reloads", "pages"))
                    else stats[0][key]) for key in stats[0]}
    totals["peak_host_kv_bytes"] = max(s["peak_host_kv_bytes"] for s in stats)  # per worker
    rows = {}
    for m in managers:
        rows.update(m.request_stats())
    per_request = pd.DataFrame.from_dict(rows, orient="index").rename_axis("request_id").reset_index()
    moved = per_request.set_index("request_id")
    frame["bytes_moved"] = frame["request_id"].map(moved["h2d_bytes"] + moved["d2h_bytes"]).fillna(0.0).astype(float)
    return totals, per_request


def cost_model_for(spec: RunSpec):
    cache: dict = {}

    def build(worker: WorkerSpec):
        key = (worker.model.name, worker.gpu.name, worker.tp, worker.pp, worker.pp_microbatches)
        if key not in cache:
            try:
                cache[key] = pipelined(lambda model: with_engine_profile(
                    lambda **p: make_cost_model(spec.cost_kind, model, worker.gpu, worker.tp, **p),
                    spec.engine_profile, dict(spec.cost_params)), worker.model, worker.pp, worker.pp_microbatches,
                    peer_link(worker.gpu))
            except (KeyError, ValueError, TypeError, FileNotFoundError) as err:
                hint = " (or use backend=sim_roofline)" if spec.cost_kind != "roofline" else ""
                raise ConfigError(f"backend.cost: cannot build a {spec.cost_kind!r} cost model for {key[0]} on "
                                  f"{key[2]} x {key[1]}: {err}{hint}") from None
        return cache[key]
    return build


def run_sim(spec: RunSpec, requests: Sequence[Request], *, fast_forward: bool = True,
            progress: bool = False, kv: KVSetup | None | str = "spec", batch_log: bool = False) -> BackendResult:
    """kv: the KV policy ("spec": the run's cfg.kvpolicy; None: full KV on the fast path); batch_log: keep
    per-iteration and per-copy records (result.batches, result.transfers)."""
    kv = spec.kv if kv == "spec" else kv
    try:
        cluster = Cluster(spec.workers, cost_model_for(spec), spec.scheduler, spec.memory, make_router(spec.router),
                          host_link=host_link(spec.gpu), progress=progress, fast_forward=fast_forward, kv=kv)
    except MemoryError as err:
        raise ConfigError(f"cluster/model: {err}") from None
    except ConfigError:
        raise
    except ValueError as err:
        raise ConfigError(f"kvpolicy: {err}") from None
    if batch_log:
        enable_batch_log(cluster)
    profile = spec.engine_profile
    if profile is None or profile.frontend_s == 0.0:
        run = cluster.run(requests)
        frame = request_frame(run)
    else:
        run = cluster.run(through_frontend(requests, profile.frontend_s, profile.frontend_serial))
        frame = as_client_sees(request_frame(run), requests)
    totals, per_request = kv_results(run, frame)
    return BackendResult(requests=frame, kv_usage=kv_usage_frame(run), workers=worker_frame(run), kv=totals,
                         kv_requests=per_request, batches=batch_frame(run) if batch_log else None,
                         transfers=transfer_frame(run) if batch_log else None)
