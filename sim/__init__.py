"""The SimPy model of LLM serving: GPUs, links, workers with iteration-level batching, and clusters."""
from tessera.sim.cluster import Cluster, ClusterRun
from tessera.sim.records import kv_usage_frame, request_frame, worker_frame
from tessera.sim.router import make_router

__all__ = ["Cluster", "ClusterRun", "kv_usage_frame", "make_router", "request_frame", "worker_frame"]
