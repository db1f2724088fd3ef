"""A worker's device KV pool counted in head-pages (16 tokens of ONE (layer, KV head)), for KV policies.

Implements tessera.interface.KVBlockPool, so the shared FCFS scheduler drives it unchanged. Growth
through the scheduler stays conservative: n new tokens reserve, for every head, the pages the token
range starts (as if every head kept every page). The KV manager then reconciles each request's
`num_blocks` with what its policy really keeps (RequestKV.device_pages) and returns the rest.

Admission also reserves a request's peak MinMax metadata and peak host KV (the manager's counters);
when either does not fit, `allocate` refuses the fresh request, so the scheduler stops admitting.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from tessera.sim.block_pool import BlockPool

if TYPE_CHECKING:
    from tessera.sim.kv_manager import KVManager


class HeadPagePool(BlockPool):
    def __init__(self, num_pages: int, page_tokens: int, num_heads: int, manager: "KVManager") -> None:
        if num_pages < num_heads:
            raise MemoryError(f"KV pool has {num_pages} head-pages, fewer than one page for each of the "
                              f"{num_heads} heads: the weights and the MinMax region leave no room for KV; use a "
                              "bigger GPU, a higher gpu_memory_utilization or kvpolicy.minmax_region=false")
        super().__init__(num_pages, page_tokens)
        self.num_heads = num_heads
        self.manager = manager

    def blocks_for_tokens(self, num_tokens: int) -> int:
        return self.num_heads * -(-num_tokens // self.block_size)

    def blocks_needed(self, seq, num_new_tokens: int) -> int:
        c, p = seq.num_computed_tokens, self.block_size
        return self.num_heads * (-(-(c + num_new_tokens) // p) - -(-c // p))

    def allocate(self, seq, num_new_tokens: int) -> bool:
        need = self.blocks_needed(seq, num_new_tokens)
        fresh = seq.num_blocks == 0 and seq.num_computed_tokens == 0
        if fresh and (need > self._free or not self.manager.reserve(seq)):
            return False  # a reservation the pages could not follow would be undone at once
        if need <= 0:
            return True
        if not self.grow(seq, need):
            if fresh:
                self.manager.unreserve(seq)
            return False
        return True

    def free(self, seq) -> None:
        """All of a request's pages go back (finish or preemption); the manager releases its state."""
        super().free(seq)
        self.manager.on_release(seq)

    # ------------------------------------------------------------------ manager-side reconciliation
    def grow(self, seq, num_pages: int) -> bool:
        if num_pages > self._free:
            return False
        self._free -= num_pages
        seq.num_blocks += num_pages
        return True

    def shrink(self, seq, num_pages: int) -> None:
        if num_pages > seq.num_blocks:
            raise AssertionError(f"request {seq.request_id} returns {num_pages} pages but holds {seq.num_blocks}")
        self._free += num_pages
        seq.num_blocks -= num_pages
