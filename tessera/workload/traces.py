"""Trace replay: a recorded trace (Azure 2023, Mooncake, or any file of those formats) as Requests.

Arrival times and token counts are used as recorded; options cut a time window, keep the first N,
speed the clock up and cap token counts.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tessera.types import Request
from tessera.workload.arrivals import MAX_SPEEDUP
from tessera.workload.checks import real_number, whole_number
from tessera.workload.limits import TokenLimits
from tessera.workload.trace_files import TraceError, read_trace_file


def load_trace(name: str | Path, *, format: str | None = None, limit: int | None = None,
               start_s: float = 0.0, end_s: float | None = None, speedup: float = 1.0,
               max_prompt_tokens: int | None = None, max_total_tokens: int | None = None,
               over_limit: str = "clip", model: str | None = None) -> list[Request]:
    """Replay a trace: Requests sorted by arrival, ids 0..n-1, the first arrival at 0 s.

    name: azure_code, azure_conv, mooncake_conversation, mooncake_synthetic, or a file path.
    Steps, in order: keep arrivals in [start_s, end_s) seconds after the trace's first request;
    apply the token caps (over_limit 'clip' or 'drop', see TokenLimits); keep the first `limit`;
    shift so the first kept request arrives at 0; divide times by `speedup` (2.0 = twice the rate).
    """
    if limit is not None:
        limit = whole_number("limit", limit, 1)  # None replays the whole trace
    speedup = real_number("speedup", speedup, at_least=1 / MAX_SPEEDUP, at_most=MAX_SPEEDUP,
                          unit=" (1.0 replays the trace as recorded)")
    start_s = real_number("start_s", start_s, at_least=0, unit=" seconds after the first request")
    if end_s is not None:
        end_s = real_number("end_s", end_s, above=start_s, unit=" seconds (greater than start_s), or None")
    limits = TokenLimits(max_prompt_tokens, max_total_tokens, over_limit)
    table = read_trace_file(name, format)
    if table.arrival_s is None:
        raise TraceError(f"{table.path}: a length table has no arrival times, so it cannot be "
                         f"replayed; use it as lengths of a synthetic workload (lengths kind "
                         f"'trace') with Poisson or gamma arrivals")

    arrival = table.arrival_s
    in_window = arrival >= start_s
    if end_s is not None:
        in_window &= arrival < end_s
    arrival = arrival[in_window]
    prompt, output, kept = limits.apply(table.prompt_tokens[in_window],
                                        table.output_tokens[in_window])
    arrival = arrival[kept][:limit]
    prompt, output = prompt[:limit], output[:limit]
    if len(arrival) == 0:
        raise ValueError(f"{table.path}: no request left after the window [{start_s}, {end_s}) "
                         f"and token caps; widen the window or relax the caps")
    arrival = (arrival - arrival[0]) / speedup
    return to_requests(arrival, prompt, output, model)


def to_requests(arrival_s: np.ndarray, prompt_tokens: np.ndarray, output_tokens: np.ndarray,
                model: str | None = None) -> list[Request]:
    """Requests with ids 0..n-1 from parallel arrays (already sorted by arrival)."""
    return [Request(request_id, arrival, prompt, output, model)
            for request_id, (arrival, prompt, output) in enumerate(
                zip(arrival_s.tolist(), prompt_tokens.tolist(), output_tokens.tolist()))]
