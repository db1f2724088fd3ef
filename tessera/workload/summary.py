"""A workload's headline numbers (count, span, rate, token percentiles) for printing and checks.

Rate is (count - 1) / span: the span covers count - 1 gaps; it is inf when all arrive together.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tessera.types import Request


def describe(requests: Sequence[Request]) -> dict[str, float]:
    """count, span_s, rate_per_s, prompt_{mean,p50,p99}, output_{mean,p50,p99}."""
    if not requests:
        return {"count": 0}
    arrival = np.array([request.arrival_s for request in requests])
    prompt = np.array([request.prompt_tokens for request in requests])
    output = np.array([request.output_tokens for request in requests])
    span_s = float(arrival.max() - arrival.min())
    if len(requests) == 1:
        rate_per_s = float("nan")
    else:
        rate_per_s = (len(requests) - 1) / span_s if span_s > 0 else float("inf")
    summary: dict[str, float] = {"count": len(requests), "span_s": span_s, "rate_per_s": rate_per_s}
    for name, values in (("prompt", prompt), ("output", output)):
        summary[f"{name}_mean"] = float(values.mean())
        summary[f"{name}_p50"] = float(np.percentile(values, 50))
        summary[f"{name}_p99"] = float(np.percentile(values, 99))
    return summary
