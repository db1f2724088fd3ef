"""A decode span's iteration end times, computed only as far as the simulation gets.

An arrival often cuts a span short; the times past the cut were never needed (sim/timeouts.py reserved_timeout
keeps the span's end event in its place of SimPy's event order).
"""
from __future__ import annotations

from typing import Callable

from tessera.interface import BatchShape, CostModel


class SpanTimes:
    """End times of `steps` pure-decode iterations of `batch_size` requests from `start`: iteration i (from 0)
    reads kv_first + i * batch_size KV tokens and its longest context is longest_first + i (0: not tracked); times
    are summed one by one, as one event per iteration would."""

    __slots__ = ("ends", "steps", "_time", "_shape", "_batch_size", "_kv", "_t", "_terms", "_longest")

    def __init__(self, iteration_time: Callable[[BatchShape], float], shape: BatchShape, start: float,
                 batch_size: int, kv_first: int, steps: int, terms: tuple | None = None,
                 longest_first: int = 0) -> None:
        """terms: the cost model's decode_step_terms(batch_size) (tessera/cost/roofline.py), when it has them: each
        step's time from them, the same floats as iteration_time(shape) without a call per step."""
        self.ends: list[float] = []
        self.steps = steps
        self._time = iteration_time
        self._shape = shape
        self._batch_size = batch_size
        self._kv = kv_first - batch_size
        self._t = start
        self._terms = terms
        self._longest = longest_first - 1 if longest_first else 0

    @property
    def complete(self) -> bool:
        return len(self.ends) == self.steps

    def extend(self, count: int) -> None:
        """The next `count` end times (fewer at the span's last iteration)."""
        shape, iteration_time, append, batch_size = self._shape, self._time, self.ends.append, self._batch_size
        kv, t = self._kv, self._t
        count = min(count, self.steps - len(self.ends))
        if self._terms is not None:
            head, t0, c_flop, c_kv, seq_s, lm = self._terms
            for _ in range(count):
                kv += batch_size
                compute = kv * c_flop
                memory = kv * c_kv + seq_s
                t += head + ((t0 + (compute if compute > memory else memory)) + lm)
                append(t)
            shape.decode_kv_tokens = kv
        elif self._longest:
            longest = self._longest
            for _ in range(count):
                kv += batch_size
                longest += 1
                shape.decode_kv_tokens = kv
                shape.decode_max_context = longest
                t += iteration_time(shape)
                append(t)
            self._longest = longest
        else:
            shape.decode_max_context = 0
            for _ in range(count):
                kv += batch_size
                shape.decode_kv_tokens = kv
                t += iteration_time(shape)
                append(t)
        self._kv, self._t = kv, t

    def cover(self, now: float) -> None:
        """End times up to the iteration in progress at `now` (where an arrival cuts the span)."""
        while self.ends[-1] < now and not self.complete:
            self.extend(1)



def span_times(cost: CostModel, shape: BatchShape, start: float, batch_size: int, kv_first: int,
               steps: int, longest_first: int = 0) -> SpanTimes:
    """SpanTimes for a cost model: from its decode_step_terms when it has them, else one iteration_time per step;
    longest_first: the first step's longest context, for a cost model that reads it (0: not tracked)."""
    terms = getattr(cost, "decode_step_terms", None)
    return SpanTimes(cost.iteration_time, shape, start, batch_size, kv_first, steps,
                     terms(batch_size) if terms is not None else None, longest_first)
