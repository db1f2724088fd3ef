"""SimPy timeouts placed in the event queue by hand (SimPy 4.1.2's entries: time, priority, event id, event).

timeout_at: at an absolute time exactly; env.timeout(at - now) lands on now + (at - now), which rounds (1 ulp off
`at`) when `now` is less than half of `at`, so a trace's arrival times would depend on what ran before.
reserved_timeout: a timeout whose place among simultaneous events is taken now and its time fixed later (a decode
span's end, computed only as far as the clock gets).
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


def reserved_timeout(env: simpy.Environment) -> Callable[[float], simpy.Event]:
    """Take the next place in the event order now; the returned function schedules the timeout that
    env.timeout(delay) would have been if created now (same time, same place among simultaneous events)."""
    start, eid = env.now, next(env._eid)
    return lambda delay: _triggered_at(env, start + delay, eid, "reserved timeout")
