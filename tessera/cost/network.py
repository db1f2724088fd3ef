"""Communication costs: point-to-point transfers and tensor-parallel all-reduce.

All-reduce time comes from Vidur's measured NCCL tables for 8-GPU NVSwitch nodes (h100_dgx,
a100_dgx) where one applies, and from the ring formula over the GPU's peer link otherwise.
"""
from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from tessera.cost.interp import PiecewiseLinear
from tessera.hardware import peer_link
from tessera.paths import data_path
from tessera.types import GPUSpec, LinkSpec

# GPU -> Vidur network folder measured on a node of that GPU (8 GPUs on NVSwitch).
VIDUR_NODES = {"H100-SXM-80GB": "h100_dgx", "A100-SXM-80GB": "a100_dgx"}


def transfer_time(num_bytes: float, link: LinkSpec) -> float:
    """Seconds to move num_bytes over link: fixed latency + bytes / per-direction bandwidth."""
    if num_bytes <= 0:
        if num_bytes < 0:
            raise ValueError(f"transfer_time: num_bytes must be >= 0, got {num_bytes}")
        return 0.0
    return link.latency_s + num_bytes / link.bandwidth_Bps


def ring_all_reduce_time(num_bytes: float, tp: int, link: LinkSpec) -> float:
    """Ring all-reduce of a num_bytes buffer over tp GPUs: each sends 2(tp-1)/tp of it, plus latency."""
    if tp <= 1 or num_bytes <= 0:
        return 0.0
    return link.latency_s + 2 * (tp - 1) / tp * num_bytes / link.bandwidth_Bps


class AllReduceTable:
    """Vidur's measured NCCL all-reduce latency (median) by buffer size, for one number of GPUs.

    Only intra-node rows are used (devices_per_node == num_workers). Sizes between measured ones are
    interpolated linearly; larger buffers scale linearly from the largest (64 MiB) measurement.
    """

    def __init__(self, node: str, num_workers: int):
        path = data_path("vidur-profiling", "network", node, "all_reduce.csv")
        df = pd.read_csv(path)
        df = df[df["devices_per_node"] == df["num_workers"]]
        available = sorted(int(w) for w in df["num_workers"].unique())
        rows = df[df["num_workers"] == num_workers]
        if rows.empty:
            raise ValueError(f"no all-reduce measurements for {num_workers} GPUs in {path}; "
                             f"measured worker counts: {available}")
        ms = rows["time_stats.all_reduce.median"]
        self.node = node
        self.num_workers = num_workers
        self._seconds = PiecewiseLinear(zip(rows["size"], ms * 1e-3))

    def __call__(self, num_bytes: float) -> float:
        return self._seconds(num_bytes) if num_bytes > 0 else 0.0


def all_reduce_time_fn(gpu: GPUSpec, tp: int, use_tables: bool = True) -> Callable[[float], float]:
    """A bytes -> seconds all-reduce cost for tp GPUs of this type inside one node."""
    if tp <= 1:
        return lambda num_bytes: 0.0
    node = VIDUR_NODES.get(gpu.name)
    if use_tables and node is not None:
        try:
            return AllReduceTable(node, tp)
        except ValueError:
            pass  # e.g. tp=3: not measured; fall through to the link formula
    link = peer_link(gpu)
    return lambda num_bytes: ring_all_reduce_time(num_bytes, tp, link)
