"""A worker's device KV pool as a block count: who holds how many blocks, and how many are free.

The simulator needs only counts, not block ids; it implements tessera.interface.KVBlockPool.
"""
from __future__ import annotations


class BlockPool:
    def __init__(self, num_blocks: int, block_size: int) -> None:
        if num_blocks < 1:
            raise MemoryError(f"KV pool has {num_blocks} blocks: the model's weights leave no room for KV "
                             "cache; use a bigger GPU, more tensor parallelism or a higher gpu_memory_utilization")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self._free = num_blocks

    @property
    def num_free_blocks(self) -> int:
        return self._free

    @property
    def num_used_blocks(self) -> int:
        return self.num_blocks - self._free

    def blocks_for_tokens(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    def blocks_needed(self, seq, num_new_tokens: int) -> int:
        return self.blocks_for_tokens(seq.num_computed_tokens + num_new_tokens) - seq.num_blocks

    def allocate(self, seq, num_new_tokens: int) -> bool:
        need = -(-(seq.num_computed_tokens + num_new_tokens) // self.block_size) - seq.num_blocks
        if need <= 0:
            return True
        if need > self._free:
            return False
        self._free -= need
        seq.num_blocks += need
        return True

    def take(self, num_blocks: int) -> None:
        """Blocks allocated to requests whose own counts are kept elsewhere (a worker's decode cohort)."""
        if num_blocks > self._free:
            raise AssertionError(f"taking {num_blocks} KV blocks with {self._free} free")
        self._free -= num_blocks

    def free(self, seq) -> None:
        self._free += seq.num_blocks
        seq.num_blocks = 0
