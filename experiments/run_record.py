"""What summary.json's metadata.ran records of a simulated setup: the cluster, the engine profile (and where it
departs from the shipped profile of its name) and the KV policy; shared by the experiments that simulate a cluster.
"""
from __future__ import annotations

from dataclasses import asdict, fields

from omegaconf import DictConfig, OmegaConf

from tessera.cost.engine_profile import EngineProfile
from tessera.experiments.resolve import RunSpec
from tessera.paths import REPO_ROOT

PROFILES = REPO_ROOT / "conf" / "engine_profile"
# What an achieved HBM share (engine_profile.hbm_fraction, backend.cost.params.hbm_fraction) slows, per cost model:
# the profiled one times the linear layers from Vidur's measured tables, which the share does not touch
HBM_FRACTION_APPLIES_TO = {"roofline": "every HBM read: weights, KV, activations",
                           "profiled": "KV reads (attention), the LM head and extra traffic only: the linear layers "
                                       "take the profiled tables' measured times"}


def shipped_profile(name: str) -> EngineProfile | None:
    """The profile conf/engine_profile/<name>.yaml ships, or None when no file has that name."""
    if name not in {p.stem for p in PROFILES.glob("*.yaml")}:  # a plain file name, never a path
        return None
    path = PROFILES / f"{name}.yaml"
    return EngineProfile.from_dict(OmegaConf.to_container(OmegaConf.load(path), resolve=True))


def engine_profile_record(profile: EngineProfile | None) -> dict:
    """The profile's fields and `changed_from_shipped`: the fields whose values differ from the shipped profile of
    the same name (an override such as engine_profile.cpu_fixed_s=..., or a renamed profile), None when no shipped
    profile has that name."""
    if profile is None:
        return {"name": "tessera_default", "changed_from_shipped": []}
    shipped = shipped_profile(profile.name)
    changed = None if shipped is None else [f.name for f in fields(profile)
                                             if getattr(profile, f.name) != getattr(shipped, f.name)]
    return asdict(profile) | {"changed_from_shipped": changed}


def simulated_cluster_record(cfg: DictConfig, spec: RunSpec) -> dict:
    """The simulated cluster a run used: GPU, workers, TP and pipeline stages, router, memory, cost model, engine
    scheduler and profile, KV policy."""
    worker = spec.workers[0]
    return {"gpu": spec.gpu.name, "num_workers": len(spec.workers), "tp": worker.tp, "pp": worker.pp,
            "pp_microbatches": worker.pp_microbatches if worker.pp > 1 else None, "router": spec.router,
            "memory": asdict(spec.memory), "kv_gib": cfg.cluster.kv_gib, "cost_model": spec.cost_kind,
            "cost_params": spec.cost_params, "hbm_fraction_applies_to": HBM_FRACTION_APPLIES_TO.get(spec.cost_kind),
            "engine": asdict(spec.scheduler),
            "engine_profile": engine_profile_record(spec.engine_profile),
            "kvpolicy": {"name": "full"} if spec.kv is None else spec.kv.ran(spec.model)}
