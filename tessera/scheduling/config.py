"""Engine limits a batch scheduler obeys (vLLM's names and defaults).

Validated on construction: a bad value names the field, the allowed range and the fix.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass


# The scheduler generations behind published numbers (tessera/scheduling/families.py): vLLM v1 FCFS with
# chunked prefill (fcfs.py, shared with the runtime), vLLM v0's prefill-first default scheduler, Sarathi-Serve's
# stall-free chunked prefill and Orca's iteration-level batching without paged KV.
SCHEDULER_FAMILIES = ("vllm_v1", "vllm_v0", "sarathi", "orca")


def _whole(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    block_size: int = 16
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192
    chunked_prefill: bool = True
    watermark: float = 0.01  # fraction of KV blocks kept free when admitting new requests (vLLM)
    family: str = "vllm_v1"  # which scheduler generation picks the batches (SCHEDULER_FAMILIES)
    # vLLM 0.5-0.6's multi-step scheduling (--num-scheduler-steps): a decode batch runs this many steps before the
    # scheduler runs again (vllm_v0 family only; 1 = a scheduler call every step)
    num_scheduler_steps: int = 1

    def __post_init__(self) -> None:
        watermark = self.watermark
        checks = [
            ("block_size", _whole(self.block_size), "a positive whole token count such as 16"),
            ("max_num_seqs", _whole(self.max_num_seqs), "a whole number >= 1"),
            ("max_num_batched_tokens", _whole(self.max_num_batched_tokens), "a whole number >= 1"),
            ("chunked_prefill", isinstance(self.chunked_prefill, bool), "true or false"),
            ("watermark", isinstance(watermark, numbers.Real) and not isinstance(watermark, bool)
             and math.isfinite(watermark) and 0.0 <= watermark < 1.0, "a fraction in [0, 1)"),
            ("family", self.family in SCHEDULER_FAMILIES, f"one of {', '.join(SCHEDULER_FAMILIES)}"),
            ("num_scheduler_steps", _whole(self.num_scheduler_steps), "a whole number >= 1 (1: no multi-step)"),
            ("num_scheduler_steps", self.num_scheduler_steps == 1 or self.family == "vllm_v0",
             "1 with this family: multi-step groups are modelled for family vllm_v0 (vLLM 0.5-0.6) only"),
        ]
        for name, ok, allowed in checks:
            if not ok:
                raise ValueError(f"scheduler.{name}={getattr(self, name)!r} is invalid: use {allowed}")
        if self.max_num_batched_tokens < self.max_num_seqs:  # vLLM's SchedulerConfig._verify_args refuses it too
            raise ValueError(f"scheduler.max_num_batched_tokens={self.max_num_batched_tokens} is below "
                             f"max_num_seqs={self.max_num_seqs}: every running sequence needs a token of the budget "
                             "each step (vLLM refuses this pair); raise max_num_batched_tokens or lower max_num_seqs")
