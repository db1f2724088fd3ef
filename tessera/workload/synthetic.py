"""Synthetic workloads: arrival times from an ArrivalProcess, lengths from a LengthSampler.

One numpy Generator seeded with `seed` feeds both, so the same seed gives identical requests.
"""
from __future__ import annotations

import numpy as np

from tessera.types import Request
from tessera.workload.arrivals import ArrivalProcess
from tessera.workload.lengths import LengthSampler
from tessera.workload.traces import to_requests


def synthetic(num_requests: int, arrivals: ArrivalProcess, lengths: LengthSampler, seed: int = 0,
              model: str | None = None) -> list[Request]:
    """num_requests Requests, ids 0..n-1 in arrival order, the first at 0 s."""
    if not (isinstance(num_requests, (int, np.integer)) and num_requests >= 1):
        raise ValueError(f"num_requests must be a whole number >= 1 (got {num_requests!r})")
    rng = np.random.default_rng(seed)
    arrival_s = np.asarray(arrivals.sample(num_requests, rng), dtype=np.float64)
    prompt_tokens, output_tokens = lengths.sample(num_requests, rng)
    return to_requests(arrival_s, np.asarray(prompt_tokens, dtype=np.int64),
                       np.asarray(output_tokens, dtype=np.int64), model)
