"""A run's KV-policy setup on the simulator: the policy and its parameters (KVSetup), the simulator-side settings
(KVSimConfig) and the model's simulated head behaviour (truth_head_model); sim/kv_manager.py runs it.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Mapping

from tessera.kvcache.head_lists import shipped_unstable_heads
from tessera.kvcache.head_model import HeadModel, default_params, model_seed
from tessera.kvcache.head_plan import HeadMode, HeadPlan
from tessera.kvcache.policies import POLICIES, make_policy
from tessera.kvcache.policies.base import PlannedPolicy
from tessera.types import ModelSpec

RERANK_MODES = ("pages", "sampled", "moments")


@dataclass(frozen=True, slots=True)
class KVSimConfig:
    """Simulator-side settings of a KV policy (beside the policy's own parameters)."""

    host_kv_gib: float = 180.0  # pinned host KV pool (the paper's H100-NVL testbed)
    avg_num_tokens_per_req: int = 20_000  # MinMax region sizing only (authors' default)
    minmax_region: bool = True  # reserve the MinMax region out of the GPU KV budget
    # Sparse decode (per-head page lists) reaches this fraction of the dense kernel's bytes/s: the
    # paper's kernel is 4x faster than dense at 9.7x fewer bytes (batch 40, 10k tokens, K = 1,024:
    # 0.41), Quest's 7.03x at 16x fewer (32k, budget 2,048: 0.44). 1.0 = bytes only.
    sparse_kernel_efficiency: float = 0.42
    # How a rerank's page moves are drawn from the head model: "pages" materialises each head's top-K page ids
    # (HeadBehaviour.select); "sampled" draws only the counts the simulator uses (promoted, fetched, freed)
    # from the same distribution (tessera/kvcache/sampled_rerank.py), each batch's next reranks drawn ahead in
    # one vectorised draw (tessera/kvcache/rerank_batch.py): ~7x cheaper per rerank, 0.28 vs 2.0 ms of CPU
    # (Llama-3.1-8B, 10k-30k-token prompts, K = 64 pages, sim_speed.py --kvpolicy flexicache; 2026-12-06, loaded VM).
    # "moments" draws each rank's totals over the request's heads from tabulated per-head moments of the same
    # model (tessera/kvcache/moment_rerank.py): approximate (ranks correlated at lag 1 only, normal sums over
    # heads), O(1) per rank.
    rerank_mode: str = "pages"

    def __post_init__(self) -> None:
        checks = [("rerank_mode", lambda v: v in RERANK_MODES, f"one of {', '.join(RERANK_MODES)}"),
                  ("host_kv_gib", lambda v: _real(v) and 0 < v < math.inf, "a positive, finite size in GiB, e.g. 180"),
                  ("avg_num_tokens_per_req", lambda v: _whole(v) and v >= 1, "a whole token count >= 1, e.g. 20000"),
                  ("minmax_region", lambda v: isinstance(v, bool), "true or false"),
                  ("sparse_kernel_efficiency", lambda v: _real(v) and 0 < v <= 1,
                   "a fraction in (0, 1], e.g. 0.42 (1.0 charges sparse decode by bytes only)")]
        for name, ok, allowed in checks:
            if not ok(getattr(self, name)):
                raise ValueError(f"kvpolicy.{name}={getattr(self, name)!r} is invalid: use {allowed}")


def _real(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, numbers.Real) and not math.isnan(value)


def _whole(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, numbers.Integral)


def used_sim_keys(plan: HeadPlan) -> tuple[str, ...]:
    """The simulator settings a policy's plan reads (sim/kv_manager.py): the host pool and rerank mode with OFFLOAD
    heads, the MinMax region and its token sizing where the plan keeps MinMax metadata, the sparse kernel's
    efficiency where heads decode through page lists (top-K or OFFLOAD)."""
    offload = plan.count(HeadMode.OFFLOAD) > 0
    used = set()
    if offload:
        used |= {"host_kv_gib", "rerank_mode"}
    if plan.keeps_minmax:  # the region's token sizing is read while the region is on (a group default otherwise)
        used |= {"minmax_region", "avg_num_tokens_per_req"}
    if offload or plan.count(HeadMode.RESIDENT_TOPK) > 0:
        used.add("sparse_kernel_efficiency")
    return tuple(k for k in KVSimConfig.__dataclass_fields__ if k in used)


SIM_KEYS = frozenset(KVSimConfig.__dataclass_fields__)


@dataclass(frozen=True)
class KVSetup:
    """A run's KV policy: the policy name, its parameters (tessera/kvcache/config.py) and sim settings."""

    name: str = "full"
    params: Mapping[str, Any] = field(default_factory=dict)
    sim: KVSimConfig = KVSimConfig()

    @classmethod
    def from_conf(cls, conf: Mapping[str, Any]) -> "KVSetup":
        """{name: flexicache, topk_pages: 64, host_kv_gib: 180, ...} -> KVSetup (policy keys checked later)."""
        conf = dict(conf)
        name = conf.pop("name", "full")
        if name not in POLICIES:
            raise ValueError(f"kvpolicy.name={name!r} is unknown: use one of {', '.join(POLICIES)}")
        sim = KVSimConfig(**{k: conf.pop(k) for k in list(conf) if k in SIM_KEYS})
        return cls(name, conf, sim)

    def ran(self, model: ModelSpec) -> dict[str, Any]:
        """What a run records of it (summary.json metadata.ran): the name, the policy's parameters and the
        simulator settings its plan reads."""
        used = used_sim_keys(self.policy_for(model).plan)
        params = dict(self.params)
        if params.get("unstable_heads") is not None:  # the list is the unstable heads: the fraction is not read
            params.pop("unstable_fraction", None)
        return {"name": self.name, **params, **{k: getattr(self.sim, k) for k in used}}

    def policy_for(self, model: ModelSpec) -> PlannedPolicy:
        params = dict(self.params)
        if isinstance(params.get("unstable_heads"), list):
            params["unstable_heads"] = tuple(tuple(p) for p in params["unstable_heads"])
        if self.name == "flexicache" and "unstable_source" not in params and "unstable_heads" not in params:
            params["unstable_source"] = "shipped" if _has_shipped_list(model) else "synthetic"
        return make_policy(self.name, model, **params)


def _has_shipped_list(model: ModelSpec) -> bool:
    try:
        shipped_unstable_heads(model.name)
    except KeyError:
        return False
    return True


def truth_head_model(model: ModelSpec) -> HeadModel:
    """The model's simulated head behaviour: the fitted population, with the paper's profiled unstable
    heads as its unstable class where they ship (Llama-3.1-8B), a seeded random 25% otherwise."""
    unstable = shipped_unstable_heads(model.name) if _has_shipped_list(model) else None
    return HeadModel(default_params(), model.num_layers, model.num_kv_heads, unstable, seed=model_seed(model.name))
