"""Turns a composed run config into typed objects (catalog specs, engine and memory configs), checking values.

Every failure is a ConfigError naming the config key, the allowed values and the fix.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from tessera import hardware, models
from tessera.cost import KINDS as COST_KINDS
from tessera.memory import MemoryConfig
from tessera.scheduling import SchedulerConfig
from tessera.types import GPUSpec, ModelSpec, WorkerSpec
from tessera.experiments.config import ConfigError
from tessera.sim.kv_manager import KVSetup
from tessera.sim.router import ROUTERS

BACKENDS = ("sim", "runtime")


@dataclass(frozen=True)
class RunSpec:
    model: ModelSpec
    gpu: GPUSpec
    workers: tuple[WorkerSpec, ...]
    scheduler: SchedulerConfig
    memory: MemoryConfig
    router: str
    cost_kind: str
    cost_params: dict[str, Any]
    workload: dict[str, Any]
    kv: KVSetup | None = None  # None: full KV on the fast token-block path


def resolve_kv(conf, model: ModelSpec) -> KVSetup | None:
    """cfg.kvpolicy -> KVSetup (None for plain full KV); the policy is built once to validate its params."""
    conf = OmegaConf.to_container(conf, resolve=True) if isinstance(conf, DictConfig) else dict(conf or {})
    try:
        kv = KVSetup.from_conf(conf)
        if kv.name == "full":
            return None
        kv.policy_for(model)
    except (ValueError, TypeError, KeyError) as err:
        msg = str(err).strip(chr(34))
        raise ConfigError(msg if msg.startswith("kvpolicy") else f"kvpolicy: {msg}") from None
    return kv


def _lookup(key: str, fn, name: str):
    try:
        return fn(name)
    except (KeyError, ValueError) as err:  # the catalogs' messages list close matches and the known names
        raise ConfigError(f"{key}={name!r}: {str(err).strip(chr(34))}") from None


def _check(key: str, ok: bool, value, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is invalid: use {allowed}")


def resolve(cfg: DictConfig) -> RunSpec:
    _check("backend.kind", cfg.backend.kind in BACKENDS, cfg.backend.kind, f"one of {list(BACKENDS)}")
    _check("backend.cost.kind", cfg.backend.cost.kind in COST_KINDS, cfg.backend.cost.kind,
           f"one of {sorted(COST_KINDS)}")
    _check("cluster.router", cfg.cluster.router in ROUTERS, cfg.cluster.router, f"one of {sorted(ROUTERS)}")
    _check("cluster.num_workers", cfg.cluster.num_workers >= 1, cfg.cluster.num_workers, "an integer >= 1")
    _check("cluster.tp", cfg.cluster.tp in (1, 2, 4, 8), cfg.cluster.tp, "one of [1, 2, 4, 8] (GPUs in a node)")
    model = _lookup("model.name", models.model, cfg.model.name)
    gpu = _lookup("cluster.gpu", hardware.gpu, cfg.cluster.gpu)
    e = cfg.engine
    try:
        scheduler = SchedulerConfig(block_size=e.block_size, max_num_seqs=e.max_num_seqs,
                                    max_num_batched_tokens=e.max_num_batched_tokens,
                                    chunked_prefill=e.chunked_prefill, watermark=e.watermark)
        memory = MemoryConfig(gpu_memory_utilization=e.gpu_memory_utilization,
                              activation_reserve_gib=e.activation_reserve_gib)
    except ValueError as err:
        raise ConfigError(str(err).replace("scheduler.", "engine.").replace("memory.", "engine.")) from None
    if not cfg.workload:
        raise ConfigError("workload is empty: pick one with workload=<name> (see conf/workload/)")
    workers = tuple(WorkerSpec(worker_id=i, gpu=gpu, model=model, tp=cfg.cluster.tp)
                    for i in range(cfg.cluster.num_workers))
    return RunSpec(model=model, gpu=gpu, workers=workers, scheduler=scheduler, memory=memory,
                   router=cfg.cluster.router, cost_kind=cfg.backend.cost.kind,
                   cost_params=OmegaConf.to_container(cfg.backend.cost.params, resolve=True),
                   workload=OmegaConf.to_container(cfg.workload, resolve=True),
                   kv=resolve_kv(cfg.get("kvpolicy"), model))
