"""Device-memory arithmetic shared by the simulator, the placer and the runtime: weights, KV pool size.

vLLM's rule: KV cache = gpu_memory_utilization x HBM - weights - activation peak, per GPU.
"""
from __future__ import annotations

import math

from dataclasses import dataclass

from tessera.types import GPUSpec, ModelSpec


@dataclass(frozen=True, slots=True)
class MemoryConfig:
    gpu_memory_utilization: float = 0.9
    activation_reserve_gib: float = 2.0  # per GPU: activation peak + CUDA graphs + allocator slack

    def __post_init__(self) -> None:
        if not 0.0 < self.gpu_memory_utilization <= 1.0:
            raise ValueError(f"memory.gpu_memory_utilization={self.gpu_memory_utilization} is invalid: "
                             "use a fraction in (0, 1], e.g. 0.9")
        if not math.isfinite(self.activation_reserve_gib) or self.activation_reserve_gib < 0:
            raise ValueError(f"memory.activation_reserve_gib={self.activation_reserve_gib} is invalid: use >= 0")


def kv_heads_per_gpu(model: ModelSpec, tp: int) -> int:
    """KV heads are split across tensor-parallel ranks, replicated when there are fewer heads than ranks."""
    return max(1, -(-model.num_kv_heads // tp))


def kv_bytes_per_token_per_gpu(model: ModelSpec, tp: int) -> int:
    return 2 * model.num_layers * kv_heads_per_gpu(model, tp) * model.head_dim * model.dtype_bytes


def kv_budget_bytes_per_gpu(model: ModelSpec, gpu: GPUSpec, tp: int, memory: MemoryConfig) -> float:
    return (gpu.hbm_bytes * memory.gpu_memory_utilization - model.weight_bytes / tp
            - memory.activation_reserve_gib * 2**30)


def num_kv_blocks(model: ModelSpec, gpu: GPUSpec, tp: int, memory: MemoryConfig, block_size: int) -> int:
    """KV blocks of `block_size` tokens (all layers and heads of a token) the worker's pool holds."""
    budget = kv_budget_bytes_per_gpu(model, gpu, tp, memory)
    if budget <= 0:
        raise MemoryError(
            f"{model.name} on {tp} x {gpu.name}: weights ({model.weight_bytes / tp / 2**30:.1f} GiB per GPU) "
            f"plus the activation reserve ({memory.activation_reserve_gib} GiB) exceed "
            f"gpu_memory_utilization x HBM ({memory.gpu_memory_utilization} x {gpu.hbm_bytes / 2**30:.1f} GiB); "
            "use more tensor parallelism, a bigger GPU or a higher memory.gpu_memory_utilization")
    return int(budget // (block_size * kv_bytes_per_token_per_gpu(model, tp)))
