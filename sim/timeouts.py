"""SimPy timeouts placed in the event queue by hand (SimPy 4.1.2's entries: time, priority, event id, event).

timeout_at: at an absolute time exactly; env.timeout(at - now) lands on now + (at - now), which rounds (1 ulp off
`at`) when `now` is less than half of `at`, so a trace's arrival times would depend on what ran before.
reserved_timeout: a timeout whose place among simultaneous events is taken now and its time fixed later (a decode
span's end, computed only as far as the clock gets), at an absolute time too; timeout_at_place: the same for a place
taken earlier by hand (a quiet copy's landing, sim/link.py, that turns out to need an event).
"""
from __future__ import annotations

from heapq import heappush
from typing import Callable

import simpy
from simpy.events import NORMAL


def _triggered_at(env: simpy.Environment, at: float, eid: int, what: str) -> simpy.Event:
    if at < env.now:
        raise ValueError(f"{what} at {at} is in the past (now {env.now})")
    event = simpy.Event(env)
    event._ok = True
    event._value = None
    heappush(env._queue, (at, NORMAL, eid, event))
    return event


def timeout_at(env: simpy.Environment, at: float) -> simpy.Event:
    """The event env.timeout(at - env.now) would be (same place among simultaneous events), triggered at `at`."""
    return _triggered_at(env, at, next(env._eid), "timeout")


def timeout_at_place(env: simpy.Environment, at: float, eid: int) -> simpy.Event:
    """A timeout at `at` in the place among simultaneous events that event id `eid` (taken earlier with
    next(env._eid), and by no other event) gives it."""
    return _triggered_at(env, at, eid, "timeout")


def reserved_timeout(env: simpy.Environment) -> Callable[[float], simpy.Event]:
    """Take the next place in the event order now; the returned function schedules, at absolute time `at`, the
    timeout that env.timeout(at - now) would have been if created now (same place among simultaneous events)."""
    eid = next(env._eid)
    return lambda at: _triggered_at(env, at, eid, "reserved timeout")
