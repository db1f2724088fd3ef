"""A SimPy timeout at an absolute time, exactly: env.timeout(at - now) lands on now + (at - now), which rounds
(1 ulp off `at`) when `now` is less than half of `at`, so a trace's arrival times would depend on what ran before."""
from __future__ import annotations

from heapq import heappush

import simpy
from simpy.events import NORMAL


def timeout_at(env: simpy.Environment, at: float) -> simpy.Event:
    """The event env.timeout(at - env.now) would be (same place among simultaneous events), triggered at `at`
    itself (SimPy 4.1.2's queue entries: time, priority, event id, event)."""
    if at < env.now:
        raise ValueError(f"timeout at {at} is in the past (now {env.now})")
    event = simpy.Event(env)
    event._ok = True
    event._value = None
    heappush(env._queue, (at, NORMAL, next(env._eid), event))
    return event
