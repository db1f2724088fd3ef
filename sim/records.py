"""Turns a finished simulation into the shared results tables: one row per request, KV usage per worker.

Columns follow tessera.results.schema, so simulated and measured runs load and compare the same way.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from tessera.results.schema import REQUEST_COLUMNS
from tessera.sim.cluster import ClusterRun
from tessera.sim.utilization import utilization


def request_frame(run: ClusterRun) -> pd.DataFrame:
    seqs = run.seqs
    reqs = [s.request for s in seqs]
    columns = {
        "request_id": [r.request_id for r in reqs],
        "query_id": [r.query_id for r in reqs],
        "stage": [r.stage for r in reqs],
        "model": [r.model for r in reqs],
        "worker": [s.worker_id for s in seqs],
        "arrival_s": [s.arrival_s for s in seqs],
        "start_s": [s.first_scheduled_s for s in seqs],
        "first_token_s": [s.first_token_s for s in seqs],
        "finish_s": [s.finish_s for s in seqs],
        "prompt_tokens": [r.prompt_tokens for r in reqs],
        "output_tokens": [r.output_tokens for r in reqs],
        "preemptions": [s.num_preemptions for s in seqs],
        "bytes_moved": np.zeros(len(seqs)),
        "answer": [None] * len(seqs),
        "correct": [None] * len(seqs),
        "status": [s.status for s in seqs],
        "execution_s": [s.execution_s for s in seqs],
        "preemption_s": [s.preemption_s for s in seqs],
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
                     "kv_blocks": w.pool.num_blocks, "iterations": w.num_iterations, "busy_s": w.busy_s,
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
        parts.append(pd.DataFrame({"worker": np.full(len(log), w.worker_id), "t_s": log.t_s,
                                   "duration_s": log.duration_s, "prefill_tokens": log.prefill_tokens,
                                   "decode_seqs": log.decode_seqs, "kv_tokens_read": log.kv_tokens_read,
                                   "preemptions": log.preemptions}))
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
