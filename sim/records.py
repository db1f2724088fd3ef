"""Turns a finished simulation into the shared results tables: one row per request, KV usage per worker.

Columns follow tessera.results.schema, so simulated and measured runs load and compare the same way.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from tessera.results.schema import REQUEST_COLUMNS
from tessera.sim.cluster import ClusterRun


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
    }
    frame = pd.DataFrame(columns).astype(REQUEST_COLUMNS)
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
    """Per-worker counters: iterations, busy time and fraction, preemptions, KV pool size."""
    end = run.end_s if run.end_s > 0 else float("nan")
    return pd.DataFrame([{
        "worker": w.worker_id, "model": w.spec.model.name, "gpu": w.spec.gpu.name, "tp": w.spec.tp,
        "kv_blocks": w.pool.num_blocks, "iterations": w.num_iterations, "busy_s": w.busy_s,
        "busy_fraction": w.busy_s / end, "preemptions": w.num_preemptions,
    } for w in run.workers])
