"""What the simulator refuses: malformed requests (an error before the run) and requests an engine can never run.

A request that can never run is rejected on its own, as vLLM does, with a status naming the engine keys and
the fix; a malformed request (no tokens, NaN arrival, duplicate id) is a ValueError before anything runs.
"""
from __future__ import annotations

import math
import numbers
from typing import Sequence

from tessera.scheduling import SchedulerConfig
from tessera.types import Request
from tessera.workload.checks import MAX_TOKENS

KV_FIX = ("fix: raise engine.gpu_memory_utilization or cluster.kv_gib, use more tensor parallelism (cluster.tp) "
          "or a bigger GPU, or cap the workload's token counts")


def _whole(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _plainly_valid(requests: Sequence[Request]) -> bool:
    """The common case checked column by column at C speed: int token counts in range, int or float arrivals that
    are finite and >= 0, unique ids. False sends the requests through the loop that names the first bad one."""
    prompts = [r.prompt_tokens for r in requests]
    outputs = [r.output_tokens for r in requests]
    arrivals = [r.arrival_s for r in requests]
    if not prompts:
        return True
    for counts in (prompts, outputs):
        if set(map(type, counts)) != {int} or min(counts) < 1 or max(counts) > MAX_TOKENS:
            return False
    if not set(map(type, arrivals)) <= {float, int} or not all(map(math.isfinite, arrivals)) or min(arrivals) < 0:
        return False
    return len({r.request_id for r in requests}) == len(requests)


def check_requests(requests: Sequence[Request]) -> None:
    """Raise ValueError naming the first request with a bad field, before a simulation starts."""
    if _plainly_valid(requests):
        return
    seen: set = set()
    for request in requests:
        rid = request.request_id
        for name in ("prompt_tokens", "output_tokens"):
            value = getattr(request, name)
            if not (_whole(value) and 1 <= value <= MAX_TOKENS):
                raise ValueError(f"request {rid!r}: {name}={value!r} is invalid: use a whole number from 1 to "
                                 f"{MAX_TOKENS:,}; fix the workload that made it")
        arrival = request.arrival_s
        if (isinstance(arrival, bool) or not isinstance(arrival, numbers.Real) or not math.isfinite(arrival)
                or arrival < 0):
            raise ValueError(f"request {rid!r}: arrival_s={arrival!r} is invalid: arrival times must be finite "
                             "seconds >= 0; fix the workload that made it")
        if rid in seen:
            raise ValueError(f"request id {rid!r} appears twice; request ids must be unique (results are keyed "
                             "by them)")
        seen.add(rid)


def prefill_limit_rejection(num_tokens: int, config: SchedulerConfig | None, preempted: bool = False) -> str | None:
    """Why a request whose next prefill is num_tokens long can never be scheduled, or None.

    Without chunked prefill a prefill runs in one step, so it must fit max_num_batched_tokens (vLLM refuses
    such prompts too). A preempted request recomputes its prompt and generated tokens in one prefill.
    """
    if config is None or config.chunked_prefill or num_tokens <= config.max_num_batched_tokens:
        return None
    what = (f"was preempted after {num_tokens:,} tokens and recomputing them needs one {num_tokens:,}-token "
            "prefill" if preempted else f"has a {num_tokens:,}-token prompt")
    return (f"rejected: {what} but engine.max_num_batched_tokens={config.max_num_batched_tokens:,} with "
            f"engine.chunked_prefill=false; fix: raise engine.max_num_batched_tokens to >= {num_tokens:,} or set "
            + ("engine.chunked_prefill=true" if config.family == "vllm_v1" else
               f"engine.scheduler=sarathi or vllm_v1 ({config.family} never chunks prefills)"))
