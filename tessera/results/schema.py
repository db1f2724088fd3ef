"""The per-request results schema shared by the simulator and the runtime (docs/outputs.md).

Times are seconds from the start of the run; a request that never finished has NaN times and a status saying why.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

# column -> pandas dtype
REQUEST_COLUMNS: dict[str, str] = {
    "request_id": "int64",
    "query_id": "Int64",
    "stage": "string",
    "model": "string",
    "worker": "int64",
    "arrival_s": "float64",
    "start_s": "float64",  # first time scheduled
    "first_token_s": "float64",
    "finish_s": "float64",
    "prompt_tokens": "int64",
    "output_tokens": "int64",
    "preemptions": "int64",
    "bytes_moved": "float64",  # host<->device KV bytes for this request
    "answer": "string",
    "correct": "boolean",
    "status": "string",
}

# optional per-request breakdown (the simulator fills it): time in iterations that ran the request, time from each
# preemption until it ran again, the rest of its time in the engine (waiting for a batch slot, KV stalls), and, when
# an engine profile has a frontend (frontend_s > 0), its time between the client's send and the engine
BREAKDOWN_COLUMNS: dict[str, str] = {"execution_s": "float64", "preemption_s": "float64",
                                     "scheduling_delay_s": "float64", "frontend_s": "float64"}


def empty_frame() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in REQUEST_COLUMNS.items()})


def conform(frame: pd.DataFrame) -> pd.DataFrame:
    """Check a backend's frame has every schema column and cast to the schema's dtypes."""
    missing = [c for c in REQUEST_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"results frame lacks schema columns {missing}; every backend must fill all of "
                         f"{list(REQUEST_COLUMNS)}")
    optional = {c: t for c, t in BREAKDOWN_COLUMNS.items() if c in frame.columns}
    return frame.astype({**REQUEST_COLUMNS, **optional})


def add_latency_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """TTFT, TPOT (mean time per output token after the first), E2E and queueing delay."""
    out = frame.copy()
    out["ttft_s"] = out["first_token_s"] - out["arrival_s"]
    out["e2e_s"] = out["finish_s"] - out["arrival_s"]
    out["queue_s"] = out["start_s"] - out["arrival_s"]
    decode_tokens = (out["output_tokens"] - 1).astype("float64")
    out["tpot_s"] = np.where(decode_tokens > 0,
                             (out["finish_s"] - out["first_token_s"]) / decode_tokens.where(decode_tokens > 0, 1.0),
                             np.nan)
    return out
