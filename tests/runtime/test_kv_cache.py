"""The runtime's paged KV memory: the free-list allocator never leaks or double-frees (hypothesis state
machine), and KVCache growth, release and page moves keep the tables and allocators consistent."""
import numpy as np
import pytest
import torch
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from tessera.kvcache.summary import PageMoves
from tessera.runtime.kv_cache import BlockAllocator, KVCache, SeqTables

NUM_BLOCKS = 24


class AllocatorMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.alloc = BlockAllocator(NUM_BLOCKS)
        self.held: list[np.ndarray] = []

    @rule(n=st.integers(0, 8))
    def allocate(self, n):
        if n > self.alloc.num_free:
            with pytest.raises(MemoryError):
                self.alloc.allocate(n)
            return
        self.held.append(self.alloc.allocate(n))

    @precondition(lambda self: self.held)
    @rule(i=st.integers(0, 100))
    def free(self, i):
        self.alloc.free(self.held.pop(i % len(self.held)))

    @precondition(lambda self: any(len(h) for h in self.held))
    @rule()
    def double_free_is_refused(self):
        j = next(j for j, h in enumerate(self.held) if len(h))
        ids = self.held.pop(j)
        self.alloc.free(ids[:1])
        with pytest.raises(AssertionError):
            self.alloc.free(ids[:1])
        self.held.append(ids[1:])

    @invariant()
    def no_leak_no_duplicate(self):
        ids = np.concatenate(self.held) if self.held else np.zeros(0, np.int32)
        assert len(set(ids.tolist())) == len(ids)
        assert self.alloc.num_used == len(ids)
        assert self.alloc.num_free + self.alloc.num_used == NUM_BLOCKS
        assert all(self.alloc.is_used(int(i)) for i in ids)


TestAllocator = AllocatorMachine.TestCase
TestAllocator.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)


class CacheMachine(RuleBasedStateMachine):
    """Sequences grow, offload full pages to host, drop pages and are released; nothing leaks."""

    def __init__(self):
        super().__init__()
        self.cache = KVCache(num_layers=2, num_kv_heads=2, head_dim=16, num_device_blocks=64, num_host_blocks=64,
                             num_minmax_blocks=128)
        self.seqs: list[tuple[SeqTables, list[int]]] = []  # tables, [tokens]

    @rule(tokens=st.integers(1, 40))
    def add(self, tokens):
        t = SeqTables(2, 2, 1)
        need = 4 * -(-tokens // 16)
        if need > self.cache.device_blocks.num_free:
            return
        self.cache.grow(t, 0, tokens)
        self.seqs.append((t, [tokens]))

    @precondition(lambda self: self.seqs)
    @rule(i=st.integers(0, 100), n=st.integers(1, 20))
    def grow(self, i, n):
        t, tok = self.seqs[i % len(self.seqs)]
        need = 4 * (-(-(tok[0] + n) // 16) - -(-tok[0] // 16))
        if need > self.cache.device_blocks.num_free or need > self.cache.minmax_blocks.num_free:
            return
        self.cache.grow(t, tok[0], tok[0] + n)
        tok[0] += n

    @precondition(lambda self: self.seqs)
    @rule(i=st.integers(0, 100))
    def offload_first_page_of_head_0(self, i):
        t, tok = self.seqs[i % len(self.seqs)]
        if tok[0] < 32 or t.dev[0, 0, 0] < 0 or self.cache.host_blocks.num_free < 1:
            return
        moves = PageMoves(d2h=np.array([[0, 0, 0]], np.int32) if t.host[0, 0, 0] < 0 else np.zeros((0, 3), np.int32),
                          free=np.array([[0, 0, 0]], np.int32))
        self.cache.apply_moves(t, moves)
        assert t.dev[0, 0, 0] == -1 and t.host[0, 0, 0] >= 0

    @precondition(lambda self: self.seqs)
    @rule(i=st.integers(0, 100))
    def release(self, i):
        t, _ = self.seqs.pop(i % len(self.seqs))
        self.cache.release(t)
        assert t.num_device_blocks == 0 and (t.dev < 0).all() and (t.host < 0).all()

    @invariant()
    def tables_match_allocators(self):
        for table, alloc in (("dev", self.cache.device_blocks), ("host", self.cache.host_blocks),
                             ("mm", self.cache.minmax_blocks)):
            ids = np.concatenate([getattr(t, table)[getattr(t, table) >= 0] for t, _ in self.seqs] or [np.zeros(0)])
            assert len(set(ids.tolist())) == len(ids), f"{table} block shared"
            assert alloc.num_used == len(ids), f"{table} blocks leaked"
        for t, _ in self.seqs:
            assert t.num_device_blocks == int((t.dev >= 0).sum())


TestCache = CacheMachine.TestCase
TestCache.settings = settings(max_examples=30, stateful_step_count=25, deadline=None)


def test_reload_reuses_the_evicted_block_and_copies_host_content():
    cache = KVCache(1, 1, 16, num_device_blocks=8, num_host_blocks=8, num_minmax_blocks=0)
    t = SeqTables(1, 1)
    cache.grow(t, 0, 48)  # 3 pages
    cache.kv[:, t.dev[0, 0, :3]] = torch.arange(3.0)[None, :, None, None]
    cache.apply_moves(t, PageMoves(d2h=np.array([[0, 0, 0], [0, 0, 1]], np.int32)))
    cache.apply_moves(t, PageMoves(free=np.array([[0, 0, 0]], np.int32)))
    evicted = t.dev[0, 0, 1]
    cache.apply_moves(t, PageMoves(h2d=np.array([[0, 0, 0]], np.int32), free=np.array([[0, 0, 1]], np.int32)))
    assert t.dev[0, 0, 0] == evicted and t.dev[0, 0, 1] == -1
    assert torch.all(cache.kv[:, t.dev[0, 0, 0]] == 0.0)
    assert t.num_device_blocks == 2 and cache.device_blocks.num_used == 2
