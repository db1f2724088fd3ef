"""Engine limits a batch scheduler obeys (vLLM's names and defaults).

Validated on construction: a bad value names the field, the allowed range and the fix.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    block_size: int = 16
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192
    chunked_prefill: bool = True
    watermark: float = 0.01  # fraction of KV blocks kept free when admitting new requests (vLLM)

    def __post_init__(self) -> None:
        checks = [
            ("block_size", self.block_size >= 1, "a positive token count such as 16"),
            ("max_num_seqs", self.max_num_seqs >= 1, "at least 1"),
            ("max_num_batched_tokens", self.max_num_batched_tokens >= 1, "at least 1"),
            ("watermark", 0.0 <= self.watermark < 1.0, "a fraction in [0, 1)"),
        ]
        for name, ok, allowed in checks:
            if not ok:
                raise ValueError(f"scheduler.{name}={getattr(self, name)!r} is invalid: use {allowed}")
