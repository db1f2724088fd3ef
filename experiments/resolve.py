"""Turns a composed run config into typed objects (catalog specs, engine and memory configs), checking values.

Every failure is a ConfigError naming the config key, the allowed values and the fix.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from tessera import hardware, models
from tessera.cost import KINDS as COST_KINDS
from tessera.cost.calibration import CALIBRATION_FILE, Calibration
from tessera.cost.engine_profile import EngineProfile
from tessera.memory import MemoryConfig
from tessera.scheduling import SchedulerConfig, effective_config
from tessera.types import GPUSpec, ModelSpec, WorkerSpec
from tessera.experiments.config import ConfigError
from tessera.paths import repo_path
from tessera.sim.kv_setup import KVSetup
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
    model_path: Path | None = None  # the checkpoint folder when model.path is set (what backend=runtime loads)
    engine_profile: EngineProfile | None = None  # None: the cost model alone (tessera_default)


FULL_PAGE_TOKENS = 16  # conf/kvpolicy/full.yaml: the page size the other policies' arms compare at


def resolve_kv(conf, model: ModelSpec) -> KVSetup | None:
    """cfg.kvpolicy -> KVSetup (None for plain full KV); the policy is built once to validate its params."""
    conf = OmegaConf.to_container(conf, resolve=True) if isinstance(conf, DictConfig) else dict(conf or {})
    try:
        kv = KVSetup.from_conf(conf)
        if kv.name == "full":
            extra = sorted(set(conf) - {"name", "page_tokens"})
            if conf.get("page_tokens", FULL_PAGE_TOKENS) != FULL_PAGE_TOKENS:
                raise ConfigError(f"kvpolicy.page_tokens={conf['page_tokens']!r} has no effect with kvpolicy=full: full KV "
                                  "is paged in engine.block_size-token blocks (the runtime's kernels: 16-token pages); "
                                  "drop it, or pick a policy that reads it")
            if extra:
                raise ConfigError(f"kvpolicy.{extra[0]} has no effect with kvpolicy=full (every page of every head "
                                  "stays on the GPU); pick a policy that uses it, e.g. kvpolicy=flexicache")
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


def resolve_model(conf) -> ModelSpec:
    """model.name from the catalog, or with model.path the local checkpoint's config.json (e.g. the shipped
    model), named model.name."""
    if not conf.get("path"):
        return _lookup("model.name", models.model, conf.name)
    folder = model_folder(conf)
    from tessera.runtime.model_spec import model_spec_from_folder
    from tessera.runtime.errors import CheckpointError
    try:
        return model_spec_from_folder(folder, conf.name)
    except CheckpointError as err:
        raise ConfigError(f"model.path={conf.path!r}: {err}") from None


def model_folder(conf) -> Path:
    """The checkpoint folder of model.path, built first when it is missing and model.build names a recipe."""
    folder = repo_path(conf.path)
    if not (folder / "config.json").exists() and conf.get("build"):
        from tessera.model_builds import ModelBuildError, build_model
        try:
            build_model(conf.build, folder)
        except ModelBuildError as err:
            raise ConfigError(f"model.build={conf.build!r}: {err}") from None
    if not (folder / "config.json").exists():
        raise ConfigError(f"model.path={conf.path!r}: {folder} has no config.json; point it at a Llama-family "
                          "checkpoint folder (config.json + *.safetensors), or drop model.path to use the "
                          "catalog's model.name")
    return folder


def resolve_machine(cfg: DictConfig) -> tuple[GPUSpec, str, dict[str, Any]]:
    """(GPU spec, cost kind, cost params): the catalog's cluster.gpu with backend.cost, or with
    cluster.calibration a calibrate_runtime folder's measured spec and profiled costs (backend.cost.params
    override the calibration's efficiencies)."""
    params = OmegaConf.to_container(cfg.backend.cost.params, resolve=True)
    path = cfg.cluster.get("calibration")
    if not path:
        _check("cluster.gpu", bool(cfg.cluster.gpu), cfg.cluster.gpu,
               f"a catalog GPU ({', '.join(hardware.list_gpus())}), or set cluster.calibration")
        return _lookup("cluster.gpu", hardware.gpu, cfg.cluster.gpu), cfg.backend.cost.kind, params
    folder = repo_path(path)
    if not (folder / CALIBRATION_FILE).exists():
        raise ConfigError(f"cluster.calibration={path!r}: {folder} has no {CALIBRATION_FILE}; make one with "
                          "python -m tessera.experiments.calibrate_runtime --model <checkpoint> --out <folder>")
    if cfg.backend.kind == "sim":  # the runtime measures, it has no cost model
        _check("backend.cost.kind", cfg.backend.cost.kind == "profiled", cfg.backend.cost.kind,
               "profiled with cluster.calibration (a calibration is a profiled cost model): backend=sim")
    calib = Calibration.load(folder)
    return calib.gpu, "profiled", {**calib.cost_params(), **params}


def resolve(cfg: DictConfig) -> RunSpec:
    _check("backend.kind", cfg.backend.kind in BACKENDS, cfg.backend.kind, f"one of {list(BACKENDS)}")
    _check("backend.cost.kind", cfg.backend.cost.kind in COST_KINDS, cfg.backend.cost.kind,
           f"one of {sorted(COST_KINDS)}")
    _check("cluster.router", cfg.cluster.router in ROUTERS, cfg.cluster.router, f"one of {sorted(ROUTERS)}")
    _check("cluster.num_workers", cfg.cluster.num_workers >= 1, cfg.cluster.num_workers, "an integer >= 1")
    _check("cluster.tp", cfg.cluster.tp in (1, 2, 4, 8), cfg.cluster.tp, "one of [1, 2, 4, 8] (GPUs in a node)")
    pp, micro = cfg.cluster.get("pp", 1), cfg.cluster.get("pp_microbatches")
    _check("cluster.pp", pp >= 1 and cfg.cluster.tp * pp <= 8, pp,
           f"an integer >= 1 with tp x pp <= 8: the stages share one node's GPU-GPU link (tp={cfg.cluster.tp})")
    _check("cluster.pp", pp == 1 or cfg.backend.kind == "sim", pp, "1 with backend=runtime (it has no pipeline)")
    _check("cluster.pp_microbatches", micro is None or micro >= 1, micro, "an integer >= 1, or null for pp")
    _check("cluster.pp_microbatches", micro is None or pp > 1, micro,
           "null with cluster.pp=1 (micro-batches split a pipeline's batch; one stage has none)")
    model = resolve_model(cfg.model)
    gpu, cost_kind, cost_params = resolve_machine(cfg)
    kv_gib = cfg.cluster.get("kv_gib")
    _check("cluster.kv_gib", kv_gib is None or (math.isfinite(kv_gib) and kv_gib > 0), kv_gib,
           "a finite KV reservation in GiB > 0, or null")
    e = cfg.engine
    try:
        scheduler = SchedulerConfig(block_size=e.block_size, max_num_seqs=e.max_num_seqs,
                                    max_num_batched_tokens=e.max_num_batched_tokens,
                                    chunked_prefill=e.chunked_prefill, watermark=e.watermark,
                                    family=e.get("scheduler", "vllm_v1"),
                                    num_scheduler_steps=e.get("num_scheduler_steps", 1))
        memory = MemoryConfig(gpu_memory_utilization=e.gpu_memory_utilization,
                              activation_reserve_gib=e.activation_reserve_gib)
    except ValueError as err:
        raise ConfigError(str(err).replace("scheduler.family", "engine.scheduler").replace("scheduler.", "engine.")
                          .replace("memory.", "engine.")) from None
    scheduler = effective_config(scheduler)  # v0 and Orca never chunk, Sarathi always does
    if not cfg.workload:
        raise ConfigError("workload is empty: pick one with workload=<name> (see conf/workload/)")
    workers = tuple(WorkerSpec(worker_id=i, gpu=gpu, model=model, tp=cfg.cluster.tp, pp=pp, pp_microbatches=micro,
                               kv_bytes_per_gpu=None if kv_gib is None else kv_gib * 2**30)
                    for i in range(cfg.cluster.num_workers))
    profile = resolve_engine_profile(cfg.get("engine_profile"), gpu)
    kv = resolve_kv(cfg.get("kvpolicy"), model)
    _check("engine.num_scheduler_steps", scheduler.num_scheduler_steps == 1 or kv is None,
           scheduler.num_scheduler_steps, "1 with a KV policy (multi-step groups are modelled with full KV only)")
    _check("engine_profile.control_per_token_s", not (profile and profile.control_per_token_s and kv),
           profile.control_per_token_s if profile else None,
           "0 with a KV policy (it counts a decoding sequence's context as the KV tokens read, which a sparse "
           "policy shrinks)")
    _check("engine_profile.graph_max_context", not (profile and profile.graph_max_context and kv),
           profile.graph_max_context if profile else None,
           "null with a KV policy (a KV policy's step shapes do not carry the longest context; null prices every "
           "decode step up to the largest graph size as graphed)")
    return RunSpec(model=model, gpu=gpu, workers=workers, scheduler=scheduler, memory=memory,
                   router=cfg.cluster.router, cost_kind=cost_kind, cost_params=cost_params,
                   workload=OmegaConf.to_container(cfg.workload, resolve=True),
                   kv=kv,
                   model_path=repo_path(cfg.model.path) if cfg.model.get("path") else None,
                   engine_profile=profile)


def resolve_engine_profile(conf, gpu: GPUSpec) -> EngineProfile | None:
    """cfg.engine_profile -> EngineProfile (None for the neutral tessera_default without a frontend delay),
    checked against the GPU."""
    conf = OmegaConf.to_container(conf, resolve=True) if isinstance(conf, DictConfig) else dict(conf or {})
    if not conf:
        return None
    try:
        profile = EngineProfile.from_dict(conf)
        profile.prefill_flops_fraction(gpu.name)
    except (ValueError, TypeError) as err:
        raise ConfigError(str(err)) from None
    return None if profile.is_neutral and profile.frontend_s == 0.0 else profile
