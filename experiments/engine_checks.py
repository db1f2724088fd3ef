"""Run checks for the simulator's settings: scheduler families, engine profiles and KV policies refuse keys they
ignore.

Called from experiments/overrides.py `check_run`; each refusal names the key, why it has no effect and the fix.
"""
from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from tessera.cost.engine_profile import GRAPH_FIELDS
from tessera.experiments.config import ConfigError, override_key
from tessera.scheduling.families import CHUNKING


def check_engine_family(cfg: DictConfig, overrides: list[str]) -> None:
    """engine.chunked_prefill is fixed by every family but vllm_v1: an override of it with another is refused."""
    family = (cfg.get("engine") or {}).get("scheduler", "vllm_v1")
    fixed = CHUNKING.get(family)
    if fixed is None:
        return
    for override in overrides:
        key = override_key(override)
        if key == "engine.chunked_prefill":
            raise ConfigError(f"{override} has no effect with engine.scheduler={family}: that family "
                              f"{'always chunks prefills' if fixed else 'never chunks prefills'}; drop it, or use "
                              "engine.scheduler=vllm_v1 to choose")


# Experiments whose costs do not go through the simulator backend's cost models (experiments/backends/sim.py).
NO_ENGINE_PROFILE = {"mosaic": "the MoA placer and stages use params.cost_model",
                     "flexicache_memory": "memory per request is analytic",
                     "flexicache_rerank_cost": "the rerank cost is a per-step byte count",
                     "runtime_accuracy": "the runtime measures; it has no cost model"}


def check_engine_profile(cfg: DictConfig, overrides: list[str], experiment: str) -> None:
    """engine_profile=... is refused where no simulated cost model reads it (the runtime, analytic experiments), and
    an override of a graph setting while the profile's cuda_graphs is off (a profile's own graph settings are then
    not read: EngineProfile.from_dict)."""
    why = NO_ENGINE_PROFILE.get(experiment)
    if why is None and cfg.backend.kind == "runtime":
        why = "backend=runtime measures real step times"
    if why is None:
        profile = cfg.get("engine_profile") or {}
        if profile.get("cuda_graphs", False) is False:
            graph_keys = {f"engine_profile.{f}" for f in GRAPH_FIELDS}
            for override in overrides:
                if override_key(override) in graph_keys:
                    raise ConfigError(f"{override} has no effect with engine_profile.cuda_graphs=false (the steps run "
                                      "eagerly): drop it, or set engine_profile.cuda_graphs=true")
        return
    for override in overrides:
        key = override_key(override)
        if key == "engine_profile" or key.startswith("engine_profile."):
            raise ConfigError(f"{override} has no effect in experiment={cfg.experiment} on backend={cfg.backend.kind}: "
                              f"{why}; drop it")


def check_kv_settings(cfg: DictConfig, overrides: list[str]) -> None:
    """An override of a KV policy's simulator setting (kvpolicy.host_kv_gib, rerank_mode, ...) that the policy's
    heads do not read is refused (sim/kv_setup.py used_sim_keys); the group's own defaults for them are not (they
    are left out of what ran). A policy that does not build is left to the run's own checks."""
    from tessera.experiments.resolve import resolve_model
    from tessera.sim.kv_setup import SIM_KEYS, KVSetup, used_sim_keys

    keys = [(o, override_key(o).removeprefix("kvpolicy.")) for o in overrides
            if override_key(o).startswith("kvpolicy.")]
    policy = cfg.get("kvpolicy") or {}
    for override, key in keys:
        if key == "unstable_fraction" and policy.get("unstable_heads") is not None:
            raise ConfigError(f"{override} has no effect with kvpolicy.unstable_heads given (the list is the unstable "
                              "heads): drop one of the two")
    if cfg.backend.kind != "runtime" and (policy.get("name") or "full") != "full" and any(
            override_key(o) == "backend.fast_forward" for o in overrides):
        raise ConfigError("backend.fast_forward has no effect with a KV policy: its decodes always run through the KV "
                          "decode cohort (sim/kv_cohort.py), which matches one event per iteration; drop it")
    keys = [(o, k) for o, k in keys if k in SIM_KEYS]
    if not keys:
        return
    try:
        kv = KVSetup.from_conf(OmegaConf.to_container(cfg.kvpolicy, resolve=True))
        used = used_sim_keys(kv.policy_for(resolve_model(cfg.model)).plan) if kv.name != "full" else ()
    except (ValueError, TypeError, KeyError, ConfigError):
        return
    reads = f"its heads read {', '.join(used) or 'no simulator setting'}"
    if cfg.backend.kind == "runtime":
        used, reads = (), "the runtime moves real pages (its host pool is backend.runtime.host_kv_gib)"
    for override, key in keys:
        if key not in used:
            raise ConfigError(f"{override} has no effect with kvpolicy={kv.name} on backend={cfg.backend.kind} "
                              f"({reads}): drop it, or pick a policy that uses it")
