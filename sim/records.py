"""Turns a finished simulation into the shared results tables: one row per request, KV usage per worker.

Columns follow tessera.results.schema, so simulated and measured runs load and compare the same way.
"""
from __future__ import annotations

from operator import attrgetter

import numpy as np
import pandas as pd

from tessera.results.schema import REQUEST_COLUMNS
from tessera.sim.cluster import ClusterRun
from tessera.sim.utilization import utilization


def _column(objs: list, name: str, dtype) -> np.ndarray:
    """One attribute of every object as an array (np.fromiter: no intermediate list)."""
    return np.fromiter(map(attrgetter(name), objs), dtype=dtype, count=len(objs))


def _optional(objs: list, name: str, dtype: str):
    """A nullable schema column; all-missing (the simulator's usual case) without looking at each value twice."""
    values = list(map(attrgetter(name), objs))
    if values.count(None) == len(values):
        return pd.array(np.full(len(values), None, dtype=object), dtype=dtype)
    return values


def request_frame(run: ClusterRun) -> pd.DataFrame:
    seqs = run.seqs
    reqs = list(map(attrgetter("request"), seqs))
    n = len(seqs)
    columns = {
        "request_id": _column(reqs, "request_id", np.int64),
        "query_id": _optional(reqs, "query_id", "Int64"),
        "stage": _optional(reqs, "stage", "string"),
        "model": _optional(reqs, "model", "string"),
        "worker": _column(seqs, "worker_id", np.int64),
        "arrival_s": _column(seqs, "arrival_s", np.float64),
        "start_s": _column(seqs, "first_scheduled_s", np.float64),
        "first_token_s": _column(seqs, "first_token_s", np.float64),
        "finish_s": _column(seqs, "finish_s", np.float64),
        "prompt_tokens": _column(reqs, "prompt_tokens", np.int64),
        "output_tokens": _column(reqs, "output_tokens", np.int64),
        "preemptions": _column(seqs, "num_preemptions", np.int64),
        "bytes_moved": np.zeros(n),
        "answer": pd.array(np.full(n, None, dtype=object), dtype="string"),
        "correct": pd.array(np.full(n, None, dtype=object), dtype="boolean"),
        "status": pd.array(list(map(attrgetter("status"), seqs)), dtype="string"),
        "execution_s": _column(seqs, "execution_s", np.float64),
        "preemption_s": _column(seqs, "preemption_s", np.float64),
    }
    frame = pd.DataFrame(columns).astype(REQUEST_COLUMNS)
    # the rest of the time in the system: waiting for a batch slot (first queueing, iterations sat out, KV stalls)
    frame["scheduling_delay_s"] = frame["finish_s"] - frame["arrival_s"] - frame["execution_s"] - frame["preemption_s"]
    return frame.sort_values("request_id", kind="stable").reset_index(drop=True)


def kv_usage_frame(run: ClusterRun) -> pd.DataFrame:
    parts = []
    for w in run.workers:
        n = len(w.kv_usage_t)
        parts.append(pd.DataFrame({"worker": np.full(n, w.worker_id, dtype=np.int64),
                                   "t_s": np.asarray(w.kv_usage_t, dtype=float),
                                   "used_blocks": np.asarray(w.kv_usage_blocks, dtype=np.int64),
                                   "num_blocks": np.full(n, w.pool.num_blocks, dtype=np.int64)}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=["worker", "t_s", "used_blocks", "num_blocks"])


def worker_frame(run: ClusterRun) -> pd.DataFrame:
    """Per-worker counters: iterations, busy time and fraction, preemptions, KV pool size, and MFU/MBU over the
    run (from time 0 to the last finish) and over the worker's busy time (sim/utilization.py)."""
    end = run.end_s if run.end_s > 0 else float("nan")
    rows = []
    for w in run.workers:
        mfu, mbu = utilization(w.spec, w.totals, end)
        mfu_busy, mbu_busy = utilization(w.spec, w.totals, w.busy_s)
        rows.append({"worker": w.worker_id, "model": w.spec.model.name, "gpu": w.spec.gpu.name, "tp": w.spec.tp,
                     "pp": w.spec.pp, "kv_blocks": w.pool.num_blocks, "iterations": w.num_iterations, "busy_s": w.busy_s,
                     "busy_fraction": w.busy_s / end, "preemptions": w.num_preemptions,
                     "mfu": mfu, "mbu": mbu, "mfu_busy": mfu_busy, "mbu_busy": mbu_busy})
    return pd.DataFrame(rows)


BATCH_COLUMNS = {"worker": "int64", "t_s": "float64", "duration_s": "float64", "prefill_tokens": "int64",
                 "decode_seqs": "int64", "kv_tokens_read": "float64", "preemptions": "int64"}
TRANSFER_COLUMNS = {"gpu": "int64", "t_s": "float64", "duration_s": "float64", "direction": "string",
                    "bytes": "float64"}


def batch_frame(run: ClusterRun) -> pd.DataFrame:
    """One row per engine iteration per worker (needs enable_batch_log before the run), by worker then time."""
    parts = []
    for w in run.workers:
        log = w.batch_log
        if log is None:
            raise ValueError("batch records were not kept: call tessera.sim.batch_log.enable_batch_log(cluster) "
                             "before cluster.run (output.batch_log=true)")
        columns = {name: np.array(getattr(log, name)) for name in BATCH_COLUMNS if name != "worker"}
        parts.append(pd.DataFrame({"worker": np.full(len(log), w.worker_id), **columns}))
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(BATCH_COLUMNS))
    return frame.astype(BATCH_COLUMNS)


def transfer_frame(run: ClusterRun) -> pd.DataFrame:
    """One row per KV copy on a host link (PCIe), by GPU then time; empty for full KV (nothing is copied)."""
    logs = {w.kv.link.log.gpu: w.kv.link.log for w in run.workers
            if w.kv is not None and w.kv.link is not None and w.kv.link.log is not None}
    parts = [pd.DataFrame({"gpu": np.full(len(log), gpu), "t_s": log.t_s, "duration_s": log.duration_s,
                           "direction": log.direction, "bytes": log.num_bytes}) for gpu, log in sorted(logs.items())]
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(TRANSFER_COLUMNS))
    return frame.astype(TRANSFER_COLUMNS)
