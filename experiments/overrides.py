"""Every config key is used by what runs or refused: the checks applied to a composed run before it starts.

`check_run(cfg, overrides)` refuses (ConfigError naming the key and what decides it instead):
- keys that are not in the run schema (a typo added with `+`, e.g. +engine.max_num_seq=8), and params
  keys the experiment's own config does not define;
- command-line overrides of keys the chosen experiment/backend does not read (IGNORED below), e.g.
  cluster=h100x4 with backend=runtime, or model=... in an experiment whose models are params.models.
"""
from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from tessera.experiments.config import (BackendConf, ClusterConf, ConfigError, CostConf, EngineConf, ModelConf,
                                        OutputConf, RunConf, override_key)
from tessera.experiments.engine_checks import check_engine_family, check_engine_profile, check_kv_settings
from tessera.paths import REPO_ROOT

RUNTIME_ONLY = "backend.runtime configures backend=runtime only"
# (experiment, backend kind or None for both) -> {key prefix: what decides it instead / the fix}
SIM_FIXED_WORKLOAD = "this experiment builds its own requests from params.* (see conf/experiment/{exp}.yaml)"
FAST_FORWARD = ("the FlexiCache experiments always simulate with fast-forward on, which is exact (KV-policy runs step "
                "every iteration anyway)")
MOSAIC_POOL = "backend.runtime.workers, threads_per_worker and ray_address configure experiment=mosaic's Ray workers"
POOL_KEYS = {f"backend.runtime.{k}": MOSAIC_POOL for k in ("workers", "threads_per_worker", "ray_address")}
SIM_MOSAIC_PARAM = "a setting of the simulated MoA workload; backend=runtime runs params.runtime.*"
MULTI_STEP_KV = "multi-step groups are modelled with full KV only; the FlexiCache runs schedule every step"
IGNORED: dict[tuple[str, str | None], dict[str, str]] = {
    ("serve_trace", "sim"): {"backend.runtime": RUNTIME_ONLY},
    ("serve_trace", "runtime"): {
        "cluster": "backend=runtime runs one engine on this machine (backend.runtime.device), not a simulated "
                   "cluster",
        "engine.gpu_memory_utilization": "the runtime's KV pool is backend.runtime.device_kv_gib",
        "engine.activation_reserve_gib": "the runtime's KV pool is backend.runtime.device_kv_gib",
        "engine.block_size": "the runtime's kernels use 16-token pages",
        "backend.cost": "the runtime measures; it has no cost model",
        "backend.fast_forward": "a simulator setting",
        "engine.scheduler": "the runtime runs the vLLM v1 FCFS scheduler (tessera/scheduling/fcfs.py)",
        "engine.num_scheduler_steps": "the runtime runs the vLLM v1 FCFS scheduler (a scheduler call every step)",
        **POOL_KEYS,
    },
    ("flexicache_memory", None): {
        "model": "the models are params.models", "kvpolicy": "the policies and K are params.policies and "
        "params.topk_tokens", "cluster": "memory per request does not depend on the GPU",
        "engine": "memory per request is analytic", "workload": "memory per request is analytic",
        "backend": "memory per request is analytic", "seed": "memory per request is analytic (no sampling)"},
    ("flexicache_throughput", None): {"model": "the models are params.models", "backend.fast_forward": FAST_FORWARD,
                                      "workload": SIM_FIXED_WORKLOAD, "backend.runtime": RUNTIME_ONLY,
                                      "engine.num_scheduler_steps": MULTI_STEP_KV},
    ("flexicache_online", None): {"model": "the models are params.models", "backend.fast_forward": FAST_FORWARD,
                                  "workload": SIM_FIXED_WORKLOAD, "backend.runtime": RUNTIME_ONLY,
                                  "engine.num_scheduler_steps": MULTI_STEP_KV},
    ("flexicache_sensitivity", None): {
        "model": "the model is params.model", "workload": SIM_FIXED_WORKLOAD,
        "engine.num_scheduler_steps": MULTI_STEP_KV,
        "kvpolicy.topk_pages": "K is params.topk_pages", "kvpolicy.rerank_interval": "R is swept by "
        "params.rerank_intervals", "kvpolicy.unstable_fraction": "swept by params.unstable_fractions",
        "kvpolicy.unstable_heads": "the most unstable heads at each params.unstable_fractions entry",
        "kvpolicy.name": "the experiment compares flexicache with full KV", "backend.runtime": RUNTIME_ONLY,
        "backend.fast_forward": FAST_FORWARD},
    ("flexicache_rerank_cost", None): {
        "model": "the model is params.model", "workload": SIM_FIXED_WORKLOAD,
        "kvpolicy": "K and R are params.topk_pages and params.rerank_interval",
        "engine": "the rerank cost is per decode step, independent of the scheduler",
        "cluster.num_workers": "one GPU", "cluster.tp": "one GPU", "cluster.router": "one GPU",
        "cluster.pp": "one GPU", "cluster.pp_microbatches": "one GPU",
        "backend.runtime": RUNTIME_ONLY, "backend.fast_forward": "no simulation runs",
        "seed": "the per-step rerank cost is deterministic"},
    ("mosaic", None): {
        "model": "the MoA expert pool comes from params.datasets (tessera/workload/moa_defaults.py)",
        "workload": "the MoA queries are params.datasets x params.query_fraction",
        "cluster.tp": "the placement decides each replica's TP", "cluster.router": "the placement assigns prompts",
        "cluster.pp": "the placement runs every replica on one stage",
        "cluster.pp_microbatches": "the placement runs every replica on one stage",
        "engine.scheduler": "the MoA stages run the vLLM v1 FCFS scheduler",
        "engine.num_scheduler_steps": "the MoA stages run the vLLM v1 FCFS scheduler"},
    ("mosaic", "sim"): {
        "backend.cost": "the placer and simulator use params.cost_model", "backend.runtime": RUNTIME_ONLY,
        "backend.fast_forward": "the MoA stages are simulated event by event",
        "params.runtime": "params.runtime configures backend=runtime only"},
    ("mosaic", "runtime"): {
        "model": "the experts are params.runtime.model_folder / params.runtime.experts",
        "workload": "the questions are params.runtime.num_questions generated questions",
        "backend.cost": "the placer and the simulator's prediction use costs profiled on the workers",
        "backend.fast_forward": "a simulator setting",
        "cluster": "the workers are backend.runtime.workers (GPUs of the Ray cluster, else CPU thread groups)",
        **{f"backend.runtime.{k}": "experiment=mosaic's workers do not read it (docs/mosaic_runtime.md)"
           for k in ("realtime", "device_kv_gib", "num_device_blocks", "host_kv_gib", "max_prompt_tokens",
                     "max_output_tokens", "num_threads")},
        **{f"params.{k}": SIM_MOSAIC_PARAM for k in ("datasets", "query_fraction", "cost_model",
                                                       "calibration_rounds", "profiled_batch_size")},
        "kvpolicy": "the MoA workers' engines run full KV (a KV policy on the Ray workers is not built)",
        **{f"engine.{k}": "the workers' engines read engine.max_num_seqs and max_num_batched_tokens only; their "
           "memory is params.runtime.worker_memory_gib" for k in ("block_size", "chunked_prefill", "watermark",
                                                                 "gpu_memory_utilization", "activation_reserve_gib")}},
    ("capacity_search", None): {
        "workload.arrival": "the search sets the Poisson arrival rate (params.rate_lo, params.rate_hi)",
        "workload.num_requests": "each probe runs params.num_requests requests", "backend.runtime": RUNTIME_ONLY},
    ("runtime_accuracy", None): {
        "cluster": "the runtime runs on backend.runtime.device", "workload": "the items are params.tasks x "
        "params.context_lens", "kvpolicy": "the policies and budgets are params.policies and params.budgets",
        "engine": "the engine limits are params.max_num_seqs and params.max_num_batched_tokens",
        "backend.cost": "the runtime measures; it has no cost model", "backend.fast_forward": "a simulator setting",
        **POOL_KEYS},
}
BATCH_RECORDS = ("only experiment=serve_trace on the simulator writes per-iteration records (batches.parquet, "
                 "trace.json)")
BATCH_RECORDS_RUNS = {("serve_trace", "sim")}
SIM_ONLY = {"flexicache_memory", "flexicache_throughput", "flexicache_online", "flexicache_sensitivity",
            "flexicache_rerank_cost", "capacity_search"}
SCHEMA = {"engine": EngineConf, "cluster": ClusterConf, "model": ModelConf, "output": OutputConf,
          "backend": BackendConf, "backend.cost": CostConf}
OPEN_NODES = {"backend.runtime", "backend.cost.params"}  # checked by their consumers


def experiment_module_name(cfg: DictConfig) -> str:
    from tessera.experiments.registry import module_key
    return module_key(cfg.experiment)


def check_run(cfg: DictConfig, overrides: list[str]) -> None:
    check_schema(cfg)
    check_params(cfg)
    check_engine_family(cfg, overrides)
    check_engine_profile(cfg, overrides, experiment_module_name(cfg))
    exp = experiment_module_name(cfg)
    if exp in SIM_ONLY and cfg.backend.kind != "sim":
        raise ConfigError(f"experiment={cfg.experiment} runs in the simulator only; drop backend={cfg.backend.kind}")
    ignored = {**IGNORED.get((exp, None), {}), **IGNORED.get((exp, cfg.backend.kind), {})}
    if (exp, cfg.backend.kind) not in BATCH_RECORDS_RUNS:
        ignored |= {f"output.{key}": BATCH_RECORDS for key in ("batch_log", "chrome_trace")}
    for override in overrides:
        key = override_key(override)
        if key.startswith("hydra.") or key in ("hydra", "experiment"):
            continue
        for prefix, why in ignored.items():
            hit = key == prefix or key.startswith(prefix + ".")
            if key != "backend" and prefix.startswith(key + "."):
                # a group choice (cluster=h100x4_tp4) sets the ignored key: refused if it moved it off the default
                hit = OmegaConf.select(cfg, prefix) != _schema_default(prefix)
            if hit:
                raise ConfigError(f"{override} has no effect in experiment={cfg.experiment} on backend="
                                  f"{cfg.backend.kind}: {why.format(exp=cfg.experiment)}; drop it")
    check_kv_settings(cfg, overrides)


def _schema_default(path: str):
    node, _, name = path.rpartition(".")
    schema = SCHEMA.get(node)
    if schema is None:
        return object()  # no default known: any value counts as set
    return next((f.default for f in fields(schema) if f.name == name), object())


def check_schema(cfg: DictConfig) -> None:
    """Keys of the typed nodes must be fields of their dataclass (a `+` override can add any key)."""
    top = {f.name for f in fields(RunConf)}
    extra = sorted(set(cfg.keys()) - top - {"hydra"})
    if extra:
        raise ConfigError(f"unknown top-level key(s) {extra}; the run config has {sorted(top)}")
    for path, schema in SCHEMA.items():
        node = OmegaConf.select(cfg, path)
        if node is None:
            continue
        allowed = {f.name for f in fields(schema)}
        unknown = sorted(k for k in node.keys() if k not in allowed and f"{path}.{k}" not in OPEN_NODES)
        if unknown:
            raise ConfigError(f"{path}.{unknown[0]} is not a key of {path} (its keys: {', '.join(sorted(allowed))}); "
                              "check the spelling")


def check_params(cfg: DictConfig) -> None:
    """params.* keys must be defined by conf/experiment/<experiment>.yaml (where each has its default)."""
    path = REPO_ROOT / "conf" / "experiment" / f"{cfg.experiment}.yaml"
    declared = set()
    if path.exists():
        declared = set((OmegaConf.load(path).get("params") or {}).keys())
    given = set((cfg.get("params") or {}).keys())
    unknown = sorted(given - declared)
    if unknown:
        allowed = ", ".join(sorted(declared)) or "none"
        raise ConfigError(f"params.{unknown[0]} is not a parameter of experiment={cfg.experiment} (its params: "
                          f"{allowed}; see {Path(path).relative_to(REPO_ROOT)})")
    quick = (cfg.get("params") or {}).get("quick_overrides") or {}
    bad = sorted(set(quick.keys()) - declared)
    if bad:
        raise ConfigError(f"params.quick_overrides.{bad[0]} is not a parameter of experiment={cfg.experiment}")
