"""Paged KV memory of the runtime: device and host pools of per-(layer, KV head) pages, MinMax metadata,
per-request block tables, and the execution of a KV policy's page moves through the kernels' dispatcher.

Layout (kernels/layout.py): ONE flat device pool ``kv[2, num_device_blocks, 16, head_dim]`` shared by all
layers (block ids are global, so one free list serves every layer and the scheduler's head-page count is
exactly the allocator's), a host pool of the same shape (pinned on CUDA) for offloaded pages, and a
MinMax pool ``minmax[num_minmax_blocks, 2, head_dim]`` with its own ids (an offloaded page keeps its
MinMax on the device, so it can still be scored). Per request, three int32 numpy tables
``[layers, kv_heads, pages]`` (-1: none) map logical pages to device, host and MinMax blocks.

Moves (tessera/kvcache/summary.py PageMoves) are executed in the order d2h, h2d, free, drop: an incoming
page reuses the block of an evicted page of the same head; the other evicted blocks are released once
the copies that read them have landed (at once on CPU; on CUDA after the side stream's event).

CUDA stream rules (the copies run on a side stream so D2H overlaps the next step's compute):
- before queueing copies the side stream waits for the compute stream (K/V written this step);
- the block-id tensors of a copy are uploaded ON the side stream (ordered before the kernel that reads
  them, and owned by that stream in the caching allocator);
- after H2D the compute stream waits for the side stream (the next forward reads the reloads);
- a device block that a queued copy may still read (free, drop) goes back to the allocator only after
  an event recorded behind that copy has completed (``poll``); ``release`` instead makes the compute
  stream wait for the side stream, since every later writer of a reused block runs on the compute
  stream (write_kv) or behind the earlier copies on the side stream itself (H2D).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np
import torch

from tessera.kernels import dispatch
from tessera.kernels.layout import PAGE_SIZE


class BlockAllocator:
    """Free list of block ids [0, num_blocks) (nano-vllm style): a deque of free ids and a set of used ids.

    Allocation pops from the left, frees append on the right (FIFO reuse). Freeing an id that is not in
    use raises AssertionError: a double free or a foreign id is a bug, never silently ignored.
    """

    def __init__(self, num_blocks: int) -> None:
        if num_blocks < 0:
            raise ValueError(f"num_blocks={num_blocks} must be >= 0")
        self.num_blocks = num_blocks
        self._free: deque[int] = deque(range(num_blocks))
        self._used: set[int] = set()

    @property
    def num_free(self) -> int:
        return len(self._free)

    @property
    def num_used(self) -> int:
        return len(self._used)

    def allocate(self, n: int) -> np.ndarray:
        if n > len(self._free):
            raise MemoryError(f"needs {n} blocks, {len(self._free)} of {self.num_blocks} are free")
        ids = [self._free.popleft() for _ in range(n)]
        self._used.update(ids)
        return np.asarray(ids, dtype=np.int32)

    def free(self, ids) -> None:
        for i in np.asarray(ids, dtype=np.int64).reshape(-1).tolist():
            assert i in self._used, f"block {i} freed but not in use (double free or foreign id)"
            self._used.remove(i)
            self._free.append(i)

    def is_used(self, i: int) -> bool:
        return i in self._used


class SeqTables:
    """One request's block tables: device, host and MinMax block of each (layer, KV head, page), -1 if none."""

    def __init__(self, num_layers: int, num_kv_heads: int, capacity_pages: int = 16) -> None:
        shape = (num_layers, num_kv_heads, max(capacity_pages, 1))
        self.dev = np.full(shape, -1, dtype=np.int32)
        self.host = np.full(shape, -1, dtype=np.int32)
        self.mm = np.full(shape, -1, dtype=np.int32)
        self.num_device_blocks = 0  # entries >= 0 in dev (kept as a counter)

    def ensure(self, num_pages: int) -> None:
        cap = self.dev.shape[2]
        if num_pages <= cap:
            return
        new_cap = max(num_pages, 2 * cap)
        for name in ("dev", "host", "mm"):
            old = getattr(self, name)
            grown = np.full((*old.shape[:2], new_cap), -1, dtype=np.int32)
            grown[:, :, :cap] = old
            setattr(self, name, grown)


@dataclass
class MoveStats:
    d2h_pages: int = 0
    h2d_pages: int = 0
    freed_pages: int = 0
    dropped_pages: int = 0
    bytes: int = 0


@dataclass
class _Pending:
    event: object  # torch.cuda.Event
    dev_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))


class KVCache:
    """Device/host/MinMax pools, their allocators, and the page operations the engine needs."""

    def __init__(self, num_layers: int, num_kv_heads: int, head_dim: int, num_device_blocks: int,
                 num_host_blocks: int = 0, num_minmax_blocks: int = 0, dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu") -> None:
        device = torch.device(device)
        self.num_layers, self.num_kv_heads, self.head_dim = num_layers, num_kv_heads, head_dim
        self.dtype, self.device = dtype, device
        self.num_heads_total = num_layers * num_kv_heads
        self.page_bytes = 2 * PAGE_SIZE * head_dim * torch.empty((), dtype=dtype).element_size()
        # torch.empty: never-written slots are masked by every kernel, so no need to touch the memory
        self.kv = torch.empty(2, num_device_blocks, PAGE_SIZE, head_dim, dtype=dtype, device=device)
        pin = device.type == "cuda"
        self.host = torch.empty(2, num_host_blocks, PAGE_SIZE, head_dim, dtype=dtype, pin_memory=pin)
        self.minmax = torch.empty(num_minmax_blocks, 2, head_dim, dtype=dtype, device=device)
        self._minmax_scratch = (torch.empty(num_device_blocks, 2, head_dim, dtype=dtype, device=device)
                                if num_minmax_blocks else None)
        self.device_blocks = BlockAllocator(num_device_blocks)
        self.host_blocks = BlockAllocator(num_host_blocks)
        self.minmax_blocks = BlockAllocator(num_minmax_blocks)
        self.keeps_minmax = num_minmax_blocks > 0
        self._stream = torch.cuda.Stream(device=device) if device.type == "cuda" else None
        self._pending: list[_Pending] = []

    # ------------------------------------------------------------------------------------ growth
    def grow(self, t: SeqTables, old_tokens: int, new_tokens: int) -> int:
        """Give every head device (and MinMax) blocks for the pages that tokens [old, new) start; returns blocks."""
        p0, p1 = -(-old_tokens // PAGE_SIZE), -(-new_tokens // PAGE_SIZE)
        if p1 <= p0:
            return 0
        t.ensure(p1)
        n = (p1 - p0) * self.num_heads_total
        t.dev[:, :, p0:p1] = self.device_blocks.allocate(n).reshape(self.num_layers, self.num_kv_heads, p1 - p0)
        t.num_device_blocks += n
        if self.keeps_minmax:
            t.mm[:, :, p0:p1] = self.minmax_blocks.allocate(n).reshape(self.num_layers, self.num_kv_heads, p1 - p0)
        return n

    def release(self, t: SeqTables) -> None:
        """Every block of the request goes back (finish or preemption)."""
        if self._stream is not None:
            # A queued D2H may still read blocks about to be reused (a D2H without a free in the same
            # moves records no event). Later writers of these blocks run on the compute stream, so
            # ordering it behind every copy queued so far is enough; no host sync.
            torch.cuda.current_stream(self.device).wait_stream(self._stream)
            for pending in self._pending:  # now also safe to reuse: same argument
                self.device_blocks.free(pending.dev_ids)
            self._pending = []
        for table, alloc in ((t.dev, self.device_blocks), (t.host, self.host_blocks), (t.mm, self.minmax_blocks)):
            ids = table[table >= 0]
            if len(ids):
                alloc.free(ids)
            table.fill(-1)
        t.num_device_blocks = 0

    def write(self, k: torch.Tensor, v: torch.Tensor, slots: torch.Tensor, all_valid: bool = False) -> None:
        """K and V [N, Hkv, D] into the device pool at slots [N, Hkv] (-1: no page, skipped). all_valid:
        the caller knows every slot is a real one, so on CPU two index_copy_ do it without write_kv's
        per-call checks (per layer and step, they cost as much as a short context's attention)."""
        if not (all_valid and self.device.type == "cpu"):
            dispatch.write_kv(self.kv, k, v, slots)
            return
        flat, index = self.kv.view(2, -1, self.head_dim), slots.reshape(-1)
        flat[0].index_copy_(0, index, k.reshape(-1, self.head_dim))
        flat[1].index_copy_(0, index, v.reshape(-1, self.head_dim))

    # ------------------------------------------------------------------------------------ minmax
    def update_minmax(self, dev_ids: torch.Tensor, mm_ids: torch.Tensor) -> None:
        """MinMax of the device blocks dev_ids (pages just filled) into MinMax blocks mm_ids."""
        if not self.keeps_minmax or dev_ids.numel() == 0:
            return
        dispatch.update_minmax(self.kv, self._minmax_scratch, dev_ids)
        self.minmax.index_copy_(0, mm_ids.long(), self._minmax_scratch.index_select(0, dev_ids.long()))

    # ------------------------------------------------------------------------------------- moves
    def apply_moves(self, t: SeqTables, moves) -> MoveStats:
        """Execute one PageMoves for a request: d2h, then h2d into reused blocks, then free, then drop."""
        stats = MoveStats()
        stream = self._stream
        if stream is not None and (len(moves.d2h) or len(moves.h2d)):
            stream.wait_stream(torch.cuda.current_stream(self.device))  # K/V written by this step's compute
        if len(moves.d2h):
            l, h, p = moves.d2h.T
            src = t.dev[l, h, p]
            assert np.all(src >= 0), "d2h of a page that is not on the device"
            assert np.all(t.host[l, h, p] < 0), "page written to host twice"
            dst = self.host_blocks.allocate(len(src))
            t.host[l, h, p] = dst
            self._copy(self.kv, self.host, src, dst)
            stats.d2h_pages = len(src)
        reused = np.zeros(len(moves.free), dtype=bool)
        if len(moves.h2d):
            reused = self._reload(t, moves.h2d, moves.free)
            stats.h2d_pages = len(moves.h2d)
        if len(moves.free):
            gone = moves.free[~reused]
            l, h, p = gone.T
            ids = t.dev[l, h, p]
            assert np.all(ids >= 0), "free of a page that is not on the device"
            assert np.all(t.host[l, h, p] >= 0), "page leaves the device without a host copy"
            t.dev[l, h, p] = -1
            t.num_device_blocks -= len(ids)
            self._free_device(ids)
            stats.freed_pages = len(moves.free)
        if len(moves.drop):
            l, h, p = moves.drop.T
            ids = t.dev[l, h, p]
            assert np.all(ids >= 0), "drop of a page that is not on the device"
            t.dev[l, h, p] = -1
            t.num_device_blocks -= len(ids)
            self._free_device(ids)  # nothing reads a dropped page again, except a D2H still queued
            mm = t.mm[l, h, p]
            if np.any(mm >= 0):
                self.minmax_blocks.free(mm[mm >= 0])
                t.mm[l, h, p] = -1
            stats.dropped_pages = len(ids)
        if stream is not None and len(moves.h2d):
            torch.cuda.current_stream(self.device).wait_stream(stream)  # the next forward reads the reloads
        stats.bytes = (stats.d2h_pages + stats.h2d_pages) * self.page_bytes
        return stats

    def _reload(self, t: SeqTables, h2d: np.ndarray, free: np.ndarray) -> np.ndarray:
        """Copy promoted pages host -> device, each into the block of an evicted page of the same head.

        Returns the mask of `free` entries whose blocks were reused (the first ones of each head, as
        RequestKV's held-page accounting assumes).
        """
        by_head: dict[tuple[int, int], list[int]] = {}
        for i, (l, h, _) in enumerate(free.tolist()):
            by_head.setdefault((l, h), []).append(i)
        reused = np.zeros(len(free), dtype=bool)
        taken: dict[tuple[int, int], int] = {}
        src, dst = [], []
        for l, h, p in h2d.tolist():
            k = taken.get((l, h), 0)
            slots = by_head.get((l, h), [])
            assert k < len(slots), f"head ({l}, {h}) fetches more pages than it evicts"
            i = slots[k]
            taken[(l, h)] = k + 1
            reused[i] = True
            _, _, old_page = free[i]
            block = t.dev[l, h, old_page]
            assert block >= 0 and t.dev[l, h, p] < 0 and t.host[l, h, p] >= 0, "bad reload"
            t.dev[l, h, old_page] = -1
            t.dev[l, h, p] = block
            src.append(t.host[l, h, p])
            dst.append(block)
        self._copy(self.host, self.kv, np.asarray(src, np.int32), np.asarray(dst, np.int32))
        return reused

    def _copy(self, src_pool: torch.Tensor, dst_pool: torch.Tensor, src: np.ndarray, dst: np.ndarray) -> None:
        ids = torch.from_numpy(np.stack((np.asarray(src, dtype=np.int64).reshape(-1),
                                         np.asarray(dst, dtype=np.int64).reshape(-1))))
        if self._stream is None:
            dispatch.copy_blocks(src_pool, dst_pool, ids[0], ids[1])
            return
        with torch.cuda.stream(self._stream):
            # Uploaded on the side stream: the kernel below is ordered after the upload, and the
            # caching allocator ties the id tensor to this stream (no reuse while the kernel reads it).
            ids = ids.pin_memory().to(self.device, non_blocking=True)
            dispatch.copy_blocks(src_pool, dst_pool, ids[0], ids[1], stream=self._stream)

    def _free_device(self, ids: np.ndarray) -> None:
        if self._stream is None:
            self.device_blocks.free(ids)
            return
        event = torch.cuda.Event()
        event.record(self._stream)  # after every copy queued so far (some may read these blocks)
        self._pending.append(_Pending(event, np.asarray(ids, np.int32)))

    def poll(self, wait: bool = False) -> None:
        """Release device blocks whose pending copies have landed (everything at once on CPU)."""
        keep = []
        for pending in self._pending:
            if wait:
                pending.event.synchronize()
            if wait or pending.event.query():
                self.device_blocks.free(pending.dev_ids)
            else:
                keep.append(pending)
        self._pending = keep

    @property
    def num_pending_blocks(self) -> int:
        return sum(len(p.dev_ids) for p in self._pending)
