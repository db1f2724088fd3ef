"""The serving frontend between a client and the engine: requests reach the engine `frontend_s` after they were
sent (one at a time when serial), and results are reported as the client sees them (arrival = send time).

A real server's TTFT includes HTTP, tokenisation and the delivery of the first output chunk, which no engine
step contains; an engine profile's `frontend_s` charges them per request (TPOT is unchanged). With
`frontend_serial` the frontend serves one request at a time (vLLM's API server tokenises and hands requests to
the engine from one event loop), so a burst sent at once reaches the engine spread out by frontend_s each.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import pandas as pd

from tessera.types import Request


def through_frontend(requests: Sequence[Request], frontend_s: float, serial: bool = False) -> list[Request]:
    """The requests as the engine receives them: every arrival `frontend_s` later, or with `serial` each request
    handled after the one sent before it (ties in send order: request list order), frontend_s each."""
    if frontend_s == 0.0:
        return list(requests)
    if not serial:
        return [replace(r, arrival_s=r.arrival_s + frontend_s) for r in requests]
    out = list(requests)
    free_at = float("-inf")
    for i in sorted(range(len(out)), key=lambda i: out[i].arrival_s):
        free_at = max(out[i].arrival_s, free_at) + frontend_s
        out[i] = replace(out[i], arrival_s=free_at)
    return out


def as_client_sees(frame: pd.DataFrame, sent: Sequence[Request]) -> pd.DataFrame:
    """A request frame of engine-side times with arrival_s set back to each request's client send time (from
    `sent`, the requests as the client sent them, one per request id), so TTFT and E2E include the frontend.
    Engine-side columns (start, first token, finish, the breakdown) stay as they are; the breakdown gains
    frontend_s, the time from the send to the engine's arrival, so its parts still add up to E2E."""
    send = {r.request_id: r.arrival_s for r in sent}
    if len(send) != len(sent):
        raise ValueError("request_id repeats among the sent requests: a frontend needs one send time per id; "
                         "give every request its own request_id")
    missing = set(frame["request_id"]) - set(send)
    if missing:
        raise ValueError(f"request_id {sorted(missing)[0]} of the results was never sent: pass the requests the "
                         "run was given")
    out = frame.copy()
    client = out["request_id"].map(send).astype(float)
    if "scheduling_delay_s" in out.columns:
        out["frontend_s"] = out["arrival_s"] - client
    out["arrival_s"] = client
    return out
