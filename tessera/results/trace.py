"""A run's per-iteration records as a Chrome / Perfetto trace (trace-event JSON, opens in ui.perfetto.dev): a
process per worker with a slice per engine iteration, a process per host link with its H2D and D2H copies."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

LINK_PID0 = 1_000_000  # host links' process ids start here (workers use worker id + 1)
DIRECTION_TID = {"h2d": 0, "d2h": 1}


def _meta(pid: int, tid: int, kind: str, name: str) -> dict:
    return {"name": kind, "ph": "M", "pid": pid, "tid": tid, "args": {"name": name}}


def trace_events(batches: pd.DataFrame, transfers: pd.DataFrame | None = None,
                 worker_names: dict[int, str] | None = None) -> list[dict]:
    """Complete ("X") events, times in microseconds, plus process/thread names ("M").

    batches: the per-iteration frame (worker, t_s, duration_s, prefill_tokens, decode_seqs, kv_tokens_read,
    preemptions); transfers: the host-link copies (gpu, t_s, duration_s, direction, bytes)."""
    names = worker_names or {}
    events = []
    for worker in sorted(batches["worker"].unique()):
        pid = int(worker) + 1
        events += [_meta(pid, 0, "process_name", names.get(int(worker), f"worker {worker}")),
                   _meta(pid, 0, "thread_name", "iterations")]
    cols = ("worker", "t_s", "duration_s", "prefill_tokens", "decode_seqs", "kv_tokens_read", "preemptions")
    for w, t, d, pf, ds, kv, pre in zip(*(batches[c].tolist() for c in cols)):
        name = f"prefill {pf} + decode {ds}" if pf else f"decode {ds}"
        events.append({"name": name, "cat": "iteration", "ph": "X", "ts": t * 1e6, "dur": d * 1e6, "pid": w + 1,
                       "tid": 0, "args": {"prefill_tokens": pf, "decode_seqs": ds, "kv_tokens_read": kv,
                                          "preemptions": pre}})
    if transfers is not None and len(transfers):
        for gpu in sorted(transfers["gpu"].unique()):
            pid = LINK_PID0 + int(gpu)
            events.append(_meta(pid, 0, "process_name", f"host link (GPU {gpu})"))
            events += [_meta(pid, tid, "thread_name", direction.upper()) for direction, tid in DIRECTION_TID.items()]
        for g, t, d, direction, size in zip(*(transfers[c].tolist() for c in
                                               ("gpu", "t_s", "duration_s", "direction", "bytes"))):
            events.append({"name": f"KV {direction.upper()} {size / 2**20:.1f} MiB", "cat": "kv_copy", "ph": "X",
                           "ts": t * 1e6, "dur": d * 1e6, "pid": LINK_PID0 + g, "tid": DIRECTION_TID[direction],
                           "args": {"bytes": size}})
    return events


def write_chrome_trace(path: str | Path, batches: pd.DataFrame, transfers: pd.DataFrame | None = None,
                       worker_names: dict[int, str] | None = None) -> Path:
    path = Path(path)
    payload = {"traceEvents": trace_events(batches, transfers, worker_names), "displayTimeUnit": "ms"}
    path.write_text(json.dumps(payload, separators=(",", ":")))
    return path
