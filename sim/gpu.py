"""A simulated accelerator: its spec and HBM bookkeeping (weights and KV reservations of resident models).

Compute time is not owned here: each worker asks its cost model how long an iteration takes.
"""
from __future__ import annotations

from tessera.types import GPUSpec


class GPU:
    def __init__(self, gpu_id: int, spec: GPUSpec) -> None:
        self.gpu_id = gpu_id
        self.spec = spec
        self.reserved: dict[str, float] = {}  # what -> bytes

    @property
    def capacity_bytes(self) -> float:
        return self.spec.hbm_bytes

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
                f"{self.free_bytes / 2**30:.2f} GiB of {self.capacity_bytes / 2**30:.2f} GiB is free "
                f"(in use: {', '.join(self.reserved) or 'nothing'}); use a bigger GPU or more tensor parallelism")
        self.reserved[what] = self.reserved.get(what, 0.0) + num_bytes

    def release(self, what: str) -> None:
        self.reserved.pop(what, None)
