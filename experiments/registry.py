"""Which module runs each `experiment=<name>`: imported lazily, so one experiment's imports never slow another.

Each module exposes run(cfg, run_dir, metadata) -> summary dict and writes its results into run_dir.
"""
from __future__ import annotations

import importlib
from typing import Callable

from tessera.experiments.config import ConfigError

EXPERIMENT_MODULES = {
    "serve_trace": "tessera.experiments.serve_trace",
    "long_context": "tessera.experiments.serve_trace",  # serve_trace on a long-context workload, its own name
    "mosaic": "tessera.experiments.mosaic",
    "flexicache_memory": "tessera.experiments.flexicache.memory",
    "flexicache_throughput": "tessera.experiments.flexicache.throughput",
    "flexicache_online": "tessera.experiments.flexicache.online",
    "flexicache_rerank_cost": "tessera.experiments.flexicache.rerank_cost",
    "flexicache_sensitivity": "tessera.experiments.flexicache.sensitivity",
    "runtime_accuracy": "tessera.experiments.runtime_eval.accuracy",
    "capacity_search": "tessera.experiments.capacity_search",
}


def module_key(name: str) -> str:
    """The experiment whose code runs `name` (long_context is serve_trace)."""
    return "serve_trace" if EXPERIMENT_MODULES.get(name) == EXPERIMENT_MODULES["serve_trace"] else name


def experiment_describer(name: str) -> Callable:
    """describe(cfg) -> dict of what a run of the config executes (validating it, running nothing)."""
    return _module(name).describe


def experiment_runner(name: str) -> Callable:
    return _module(name).run


def _module(name: str):
    if name not in EXPERIMENT_MODULES:
        raise ConfigError(f"experiment={name!r} is unknown: use one of {sorted(EXPERIMENT_MODULES)}")
    try:
        return importlib.import_module(EXPERIMENT_MODULES[name])
    except ModuleNotFoundError as err:
        if err.name == EXPERIMENT_MODULES[name]:
            raise ConfigError(f"experiment={name!r} is registered but not built yet ({err.name})") from None
        raise
