"""Run checks for the simulator-fidelity settings: scheduler families and engine profiles refuse keys they ignore.

Called from experiments/overrides.py `check_run`; each refusal names the key, why it has no effect and the fix.
"""
from __future__ import annotations

from omegaconf import DictConfig

from tessera.experiments.config import ConfigError
from tessera.scheduling.families import CHUNKING


def check_engine_family(cfg: DictConfig, overrides: list[str]) -> None:
    """engine.chunked_prefill is fixed by every family but vllm_v1: an override of it with another is refused."""
    family = (cfg.get("engine") or {}).get("scheduler", "vllm_v1")
    fixed = CHUNKING.get(family)
    if fixed is None:
        return
    for override in overrides:
        key = override.lstrip("+~").split("=", 1)[0]
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
    """engine_profile=... is refused where no simulated cost model reads it (the runtime, analytic experiments)."""
    why = NO_ENGINE_PROFILE.get(experiment)
    if why is None and cfg.backend.kind == "runtime":
        why = "backend=runtime measures real step times"
    if why is None:
        return
    for override in overrides:
        key = override.lstrip("+~").split("=", 1)[0]
        if key == "engine_profile" or key.startswith("engine_profile."):
            raise ConfigError(f"{override} has no effect in experiment={cfg.experiment} on backend={cfg.backend.kind}: "
                              f"{why}; drop it")
