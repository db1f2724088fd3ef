"""A simulated accelerator: HBM bookkeeping of its resident replicas and a compute lane they take turns on.

Iteration times come from each worker's cost model; co-resident replicas serialise their iterations on
`compute` (time-slicing: GPU time is additive across co-located models).
"""
from __future__ import annotations

import simpy

from tessera.types import GPUSpec


class GPU:
    def __init__(self, env: simpy.Environment, gpu_id: int, spec: GPUSpec, usable_fraction: float = 1.0) -> None:
        self.gpu_id = gpu_id
        self.spec = spec
        self.usable_fraction = usable_fraction  # gpu_memory_utilization
        self.compute = simpy.Resource(env, capacity=1)
        self.reserved: dict[str, float] = {}  # what -> bytes

    @property
    def capacity_bytes(self) -> float:
        return self.spec.hbm_bytes * self.usable_fraction

    @property
    def used_bytes(self) -> float:
        return sum(self.reserved.values())

    @property
    def free_bytes(self) -> float:
        return self.capacity_bytes - self.used_bytes

    def reserve(self, what: str, num_bytes: float) -> None:
        """Reserve HBM for `what`; a clear error naming both sides when it does not fit."""
        if num_bytes > self.free_bytes + 1e-6:
            raise MemoryError(
                f"GPU {self.gpu_id} ({self.spec.name}): {what} needs {num_bytes / 2**30:.2f} GiB but only "
                f"{self.free_bytes / 2**30:.2f} GiB of {self.capacity_bytes / 2**30:.2f} GiB usable is free "
                f"(in use: {', '.join(self.reserved) or 'nothing'}); use a bigger GPU, more tensor parallelism, "
                f"fewer co-resident replicas or a smaller KV reservation")
        self.reserved[what] = self.reserved.get(what, 0.0) + num_bytes

    def release(self, what: str) -> None:
        self.reserved.pop(what, None)
