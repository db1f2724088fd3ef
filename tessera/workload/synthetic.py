"""Synthetic workloads: arrival times from an ArrivalProcess, lengths from a LengthSampler.

One numpy Generator seeded with `seed` feeds both, so the same seed gives identical requests.
"""
from __future__ import annotations

import numpy as np

from tessera.types import Request
from tessera.workload.arrivals import ArrivalProcess
from tessera.workload.checks import whole_number
from tessera.workload.lengths import LengthSampler
from tessera.workload.traces import to_requests

MAX_REQUESTS = 10_000_000  # beyond this a synthetic workload would not fit in memory as Request objects


def synthetic(num_requests: int, arrivals: ArrivalProcess, lengths: LengthSampler, seed: int = 0,
              model: str | None = None) -> list[Request]:
    """num_requests Requests, ids 0..n-1 in arrival order, the first at 0 s."""
    num_requests = whole_number("num_requests", num_requests, 1, MAX_REQUESTS)
    seed = whole_number("seed", seed, 0)
    rng = np.random.default_rng(seed)
    arrival_s = np.asarray(arrivals.sample(num_requests, rng), dtype=np.float64)
    prompt_tokens, output_tokens = lengths.sample(num_requests, rng)
    return to_requests(arrival_s, np.asarray(prompt_tokens, dtype=np.int64),
                       np.asarray(output_tokens, dtype=np.int64), model)
