"""Records an engine's KV page copies (every ``dispatch.copy_blocks`` call, which runtime/kv_cache.py makes
for offload and reload): direction, bytes of the valid pairs, the stream, whether the host pool is pinned.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from tessera.kernels import dispatch


@dataclass
class CopyLog:
    d2h_bytes: int = 0
    h2d_bytes: int = 0
    calls: int = 0
    host_pool_pinned: list[bool] = field(default_factory=list)
    on_side_stream: list[bool] = field(default_factory=list)  # the cache's own stream, not the default one
    impls: set[str] = field(default_factory=set)

    @property
    def pinned_and_side_stream(self) -> bool:
        return bool(self.calls) and all(self.host_pool_pinned) and all(self.on_side_stream)


@contextlib.contextmanager
def record_copies(cache) -> Iterator[CopyLog]:
    """While active, copies between cache.kv (device pool) and cache.host (host pool) are logged."""
    log = CopyLog()
    original = dispatch.copy_blocks

    def recording(src_pool, dst_pool, src_ids, dst_ids, *, stream=None, impl=None):
        ids = torch.stack((src_ids.long().cpu(), dst_ids.long().cpu()))  # a sync: fine inside a check
        ok = (ids[0] >= 0) & (ids[0] < src_pool.shape[1]) & (ids[1] >= 0) & (ids[1] < dst_pool.shape[1])
        nbytes = int(ok.sum()) * src_pool[:, 0].numel() * src_pool.element_size()
        if src_pool is cache.kv and dst_pool is cache.host:
            log.d2h_bytes += nbytes
        elif src_pool is cache.host and dst_pool is cache.kv:
            log.h2d_bytes += nbytes
        log.calls += 1
        log.host_pool_pinned.append(cache.host.is_pinned())
        log.on_side_stream.append(stream is not None and stream == cache._stream and
                                  stream != torch.cuda.default_stream(stream.device))
        log.impls.add(dispatch.resolve_impl(impl, src_pool, dst_pool))
        return original(src_pool, dst_pool, src_ids, dst_ids, stream=stream, impl=impl)

    dispatch.copy_blocks = recording
    try:
        yield log
    finally:
        dispatch.copy_blocks = original
