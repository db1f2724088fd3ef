"""Test doubles for the simulator: a linear cost model and tiny hardware/model specs.

The linear model keeps expected times computable by hand in tests.
"""
from dataclasses import dataclass

from tessera.interface import BatchShape
from tessera.types import GPUSpec, LinkSpec, ModelSpec, WorkerSpec

TINY_MODEL = ModelSpec(name="tiny", hf_id="test/tiny", num_layers=2, hidden_size=64, num_heads=4, num_kv_heads=2,
                       head_dim=16, intermediate_size=128, vocab_size=256, num_params=1e6)
# KV per token: 2 * 2 layers * 2 heads * 16 * 2 B = 256 B; weights 2 MB; at utilisation 0.5 and no
# activation reserve the pool holds exactly 100 blocks of 16 tokens.
TINY_GPU = GPUSpec(name="tiny-gpu", hbm_bytes=(2e6 + 256 * 16 * 100) / 0.5, hbm_bandwidth_Bps=1e12,
                   peak_bf16_flops=1e14, host_link="pcie", peer_link="nvlink")
PCIE = LinkSpec(name="pcie", bandwidth_Bps=1e9, latency_s=1e-5)


@dataclass
class LinearCost:
    """iteration = base + per_token * tokens + per_kv * decode KV tokens."""

    base: float = 1e-3
    per_token: float = 1e-5
    per_kv: float = 1e-7

    def iteration_time(self, batch: BatchShape) -> float:
        return self.base + self.per_token * batch.num_tokens + self.per_kv * batch.decode_kv_tokens

    def transfer_time(self, num_bytes: float, link: LinkSpec) -> float:
        return link.latency_s + num_bytes / link.bandwidth_Bps


@dataclass
class ContextCost(LinearCost):
    """LinearCost + per_context * the step's longest decoding context (a cost model that reads decode_max_context,
    as an engine profile's graph_max_context does)."""

    per_context: float = 1e-6
    reads_max_context = True

    def iteration_time(self, batch: BatchShape) -> float:
        return LinearCost.iteration_time(self, batch) + self.per_context * batch.decode_max_context


def worker_specs(n: int = 1, tp: int = 1, model: ModelSpec = TINY_MODEL, gpu: GPUSpec = TINY_GPU):
    return [WorkerSpec(worker_id=i, gpu=gpu, model=model, tp=tp) for i in range(n)]
