"""A KV-policy worker's reloads (H2D copies of promoted pages) landed lazily: no event per copy; the worker takes the
landings due before each of its steps, in landing order, with what each landing's event would have done then.

A reloading request misses the iterations that start before its copy lands, so nothing reads what the landing
changes (the request back in `running`, its held pages returned) until the worker's next step, which comes after
every copy it started earlier that ends by then (they were booked before that step's event): taking them there, at
their own times, gives the same run as one event each (quiet_reloads=False keeps those events, the tests' reference).
An idle worker waits on one event placed where the earliest landing's own event would have been. A worker that
waits for its GPUs (replicas sharing one) takes the landings due when it gets them, before it schedules.
"""
from __future__ import annotations

import math
from heapq import heappop, heappush

from tessera.sim.timeouts import timeout_at_place


class KVReloads:
    """KVManager's reload methods; they use its env, link, shards, states, worker and _reconcile."""

    quiet_reloads = True  # False: one landing event per reload (the reference the tests compare with)

    def _reload(self, seq, st, num_bytes: int) -> None:
        """Start a reload's H2D copy; when it lands the request's held pages go and it rejoins `running`."""
        if not self.quiet_reloads:
            def landed() -> None:
                self._land(seq, st, self.env.now)

            self.link.start(num_bytes / self.shards, "h2d", landed)
            return
        end, eid = self.link.start_quiet(num_bytes / self.shards, "h2d")
        heappush(self._landings, (end, eid, seq))

    def land_reloads(self, until_eid: float = math.inf) -> None:
        """Take the reloads that landed by now (ending now: those whose event would come before event until_eid;
        inf: every one, the worker's own step coming after them), in landing order."""
        landings, now = self._landings, self.env.now
        while landings and (landings[0][0] < now or (landings[0][0] == now and landings[0][1] < until_eid)):
            end, _, seq = heappop(landings)
            self._land(seq, self._states[seq], end)

    def arm_landings(self) -> None:
        """Before the worker idles: an event where the earliest pending landing's event would be, taking it (and
        any due with it) and waking the worker as that event would have. The worker took every landing due by now
        (land_reloads) since it last waited for anything."""
        if not self._landings or self._armed == self._landings[0][1]:
            return
        end, eid, _ = self._landings[0]
        if end <= self.env.now:
            raise RuntimeError(f"worker {self.worker.worker_id}: a reload that landed at {end} was not taken before "
                               f"it idles at {self.env.now}")
        self._armed = eid

        def fire(_event) -> None:
            if self._armed == eid:
                self._armed = None
            self.land_reloads(until_eid=eid + 1)

        timeout_at_place(self.env, end, eid).callbacks.append(fire)

    def _land(self, seq, st, end: float) -> None:
        """A reload landed at `end`: the request's held pages go, it rejoins `running`."""
        st.rk.reload_landed()
        # page returns as of now, not `end`: a D2H copy of the request that landed in between would have released
        # them by now all the same (the return waiting for it, sim/kv_manager.py _defer_shrink)
        self._reconcile(seq, st)
        st.stall_s += end - st.stalled_at
        self.num_stalled -= 1
        self.worker.resume(seq)
