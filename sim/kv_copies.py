"""A KV-policy worker's D2H copies and the page returns that wait for them: a copy to host has no event (the host
link counts it when settled, sim/link.py); a request that gives pages back while its copies are in flight keeps them
until its last copy lands, through one event placed where that copy's landing event would be.
"""
from __future__ import annotations

from tessera.sim.timeouts import timeout_at_place


class KVCopies:
    """KVManager's copy and page-return methods; they use its env, link, shards, pool, worker and _deferred. `st`:
    the manager's state of one request (sim/kv_manager.py _SeqKV)."""

    def _d2h(self, st, num_bytes: int) -> None:
        """Start a D2H copy. It needs no event: only a page return deferred behind it waits for it (_defer_shrink)."""
        st.d2h_end, st.d2h_eid = self.link.start_quiet(num_bytes / self.shards, "d2h")

    def _d2h_in_flight(self, st) -> bool:
        """The request's last D2H copy (so all of them) lands after now. (One landing now is taken as landed: the
        other events now, whichever order they ran in, leave the worker's next step the same.)"""
        return st.d2h_end > self.env.now

    def _defer_shrink(self, seq, st) -> None:
        """The pages the request no longer keeps go back when its last D2H copy lands: an event where that copy's
        landing event would be (and again behind a later copy started meanwhile)."""
        epoch, eid = st.epoch, st.d2h_eid

        def landed(_event) -> None:
            if st.epoch != epoch or not st.shrink_pending:
                return
            if st.d2h_eid != eid:
                self._defer_shrink(seq, st)
                return
            st.shrink_pending = False
            self._deferred -= 1
            self._reconcile(seq, st)
            self.worker.wake()

        timeout_at_place(self.env, st.d2h_end, eid).callbacks.append(landed)

    def _reconcile(self, seq, st, device_pages: int | None = None) -> None:
        """Grow or shrink the request's pool pages to its page state's device pages (given, or read from it); a
        shrink waits for the request's D2H copies in flight (their pages are read until they land)."""
        diff = (st.rk.device_pages if device_pages is None else device_pages) - seq.num_blocks
        if diff > 0:
            if not self.pool.grow(seq, diff):
                raise AssertionError(f"request {seq.request_id} needs {diff} more head-pages than the scheduler "
                                     f"reserved and the pool has only {self.pool.num_free_blocks} free")
        elif diff < 0:
            if not self._d2h_in_flight(st):
                self.pool.shrink(seq, -diff)
            elif not st.shrink_pending:
                st.shrink_pending = True
                self._deferred += 1
                self._defer_shrink(seq, st)
