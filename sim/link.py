"""A simulated interconnect (PCIe or NVLink) with one FIFO queue per direction.

A transfer waits for its direction to be free, then takes latency + bytes / bandwidth; concurrent
transfers in one direction therefore queue and share the link's bandwidth over time. A copy whose landing nobody
waits for can be quiet (start_quiet): no event; it is counted (bytes, busy time, log) in landing order when a later
copy's landing event runs or the run settles the link (settle), as its own event would have counted it.
"""
from __future__ import annotations

from collections import deque
from typing import Callable

import simpy

from tessera.sim.batch_log import TransferLog
from tessera.sim.timeouts import timeout_at_place
from tessera.types import LinkSpec

DIRECTIONS = ("h2d", "d2h")
QUIET_BATCH = 512  # quiet copies held before those that landed are counted


class Link:
    def __init__(self, env: simpy.Environment, spec: LinkSpec) -> None:
        self.env = env
        self.spec = spec
        # each direction serves its copies one at a time in request order (FIFO): a copy starts when the one before
        # it ends, so its times are known when it is requested; one timeout per copy, no queue of SimPy requests
        self._free_at = {d: 0.0 for d in DIRECTIONS}
        self.bytes_moved = {d: 0.0 for d in DIRECTIONS}
        self.busy_s = {d: 0.0 for d in DIRECTIONS}
        self.log: TransferLog | None = None  # one entry per copy (output.batch_log); set by enable_batch_log
        # quiet copies not counted yet, per direction in start order (so in landing order: FIFO): (end, the event id
        # its landing would have had, start, duration, bytes)
        self._quiet = {d: deque() for d in DIRECTIONS}
        self._num_quiet = 0

    def transfer_time(self, num_bytes: float) -> float:
        return self.spec.latency_s + num_bytes / self.spec.bandwidth_Bps

    def transfer(self, num_bytes: float, direction: str):
        """SimPy process: move `num_bytes` in `direction` ('h2d' or 'd2h'); returns the finish time."""
        event, _ = self._queue(num_bytes, direction)
        end = yield event
        return end

    def start(self, num_bytes: float, direction: str, on_landed: Callable[[], None]) -> tuple[float, int]:
        """Queue a copy now, as transfer() does, without a process: `on_landed` runs when it lands (one event per
        copy). Returns its end time and its landing event's id (its place among simultaneous events)."""
        event, eid = self._queue(num_bytes, direction)
        event.callbacks.append(lambda _event: on_landed())
        return event._value, eid

    def start_quiet(self, num_bytes: float, direction: str) -> tuple[float, int]:
        """Queue a copy whose landing needs no callback: no event (it is counted when settled). Returns its end
        time and the event id its landing would have had: a caller that comes to need the landing schedules it
        there (timeouts.timeout_at_place), where start() would have."""
        start, duration, end = self._book(num_bytes, direction)
        eid = next(self.env._eid)
        self._quiet[direction].append((end, eid, start, duration, num_bytes))
        self._num_quiet += 1
        if self._num_quiet > QUIET_BATCH:  # count those that landed already: the pending ones stay few
            self._settle(self.env.now, -1)
        return end, eid

    def settle(self, until: float = float("inf")) -> None:
        """Count the quiet copies that landed by `until` (the run's end): what their events would have counted."""
        self._settle(until, float("inf"))

    def _queue(self, num_bytes: float, direction: str) -> tuple[simpy.Event, int]:
        """The event of a copy queued now behind the direction's earlier ones, and its id; at its end it counts the
        copy."""
        start, duration, end = self._book(num_bytes, direction)
        eid = next(self.env._eid)
        event = timeout_at_place(self.env, end, eid)
        event._value = end
        event.callbacks.append(lambda _event: self._count(start, duration, direction, num_bytes, end, eid))
        return event, eid

    def _book(self, num_bytes: float, direction: str) -> tuple[float, float, float]:
        """(start, duration, end) of a copy queued now behind the direction's earlier ones (FIFO)."""
        free_at = self._free_at.get(direction)
        if free_at is None:
            raise ValueError(f"link direction {direction!r} is not one of {DIRECTIONS}")
        if num_bytes < 0:
            raise ValueError(f"transfer of {num_bytes} bytes: the size must be >= 0")
        now = self.env._now
        start = now if now > free_at else free_at
        duration = self.transfer_time(num_bytes)
        end = self._free_at[direction] = start + duration
        return start, duration, end

    def _count(self, start: float, duration: float, direction: str, num_bytes: float, end: float, eid: int) -> None:
        """A copy's landing event runs: first the quiet copies that landed before it, then it."""
        if self._num_quiet:
            self._settle(end, eid)
        self._landed(start, duration, direction, num_bytes)

    def _settle(self, end: float, eid: float) -> None:
        """Count the quiet copies whose landing comes before (end, eid), in landing order across directions."""
        h2d, d2h = self._quiet["h2d"], self._quiet["d2h"]
        while True:
            a = h2d[0] if h2d else None
            b = d2h[0] if d2h else None
            if a is None and b is None:
                return
            if b is None or (a is not None and (a[0], a[1]) < (b[0], b[1])):
                head, queue, direction = a, h2d, "h2d"
            else:
                head, queue, direction = b, d2h, "d2h"
            if not (head[0] < end or (head[0] == end and head[1] < eid)):
                return
            queue.popleft()
            self._num_quiet -= 1
            self._landed(head[2], head[3], direction, head[4])

    def _landed(self, start: float, duration: float, direction: str, num_bytes: float) -> None:
        self.bytes_moved[direction] += num_bytes
        self.busy_s[direction] += duration
        if self.log is not None:
            self.log.add(start, duration, direction, num_bytes)
