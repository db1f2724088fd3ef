"""The serving frontend between a client and the engine: requests reach the engine `frontend_s` after they were
sent, and results are reported as the client sees them (arrival = when the client sent the request).

A real server's TTFT includes HTTP, tokenisation and the delivery of the first output chunk, which no engine
step contains; an engine profile's `frontend_s` charges them as one delay per request (TPOT is unchanged).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import pandas as pd

from tessera.types import Request


def through_frontend(requests: Sequence[Request], frontend_s: float) -> list[Request]:
    """The requests as the engine receives them: every arrival `frontend_s` later."""
    if frontend_s == 0.0:
        return list(requests)
    return [replace(r, arrival_s=r.arrival_s + frontend_s) for r in requests]


def as_client_sees(frame: pd.DataFrame, frontend_s: float) -> pd.DataFrame:
    """A request frame of engine-side times with arrival_s moved back to the client's send time, so TTFT and
    E2E include the frontend. Engine-side columns (start, first token, finish, the breakdown) stay as they are:
    finish - arrival - execution - preemption - scheduling delay is then frontend_s."""
    if frontend_s == 0.0:
        return frame
    out = frame.copy()
    out["arrival_s"] = out["arrival_s"] - frontend_s
    return out
