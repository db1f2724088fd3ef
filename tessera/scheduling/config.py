"""Engine limits a batch scheduler obeys (vLLM's names and defaults).

Validated on construction: a bad value names the field, the allowed range and the fix.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass


def _whole(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    block_size: int = 16
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192
    chunked_prefill: bool = True
    watermark: float = 0.01  # fraction of KV blocks kept free when admitting new requests (vLLM)

    def __post_init__(self) -> None:
        watermark = self.watermark
        checks = [
            ("block_size", _whole(self.block_size), "a positive whole token count such as 16"),
            ("max_num_seqs", _whole(self.max_num_seqs), "a whole number >= 1"),
            ("max_num_batched_tokens", _whole(self.max_num_batched_tokens), "a whole number >= 1"),
            ("chunked_prefill", isinstance(self.chunked_prefill, bool), "true or false"),
            ("watermark", isinstance(watermark, numbers.Real) and not isinstance(watermark, bool)
             and math.isfinite(watermark) and 0.0 <= watermark < 1.0, "a fraction in [0, 1)"),
        ]
        for name, ok, allowed in checks:
            if not ok:
                raise ValueError(f"scheduler.{name}={getattr(self, name)!r} is invalid: use {allowed}")
