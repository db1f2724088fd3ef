"""What a `experiment=mosaic backend=runtime` run executes, read and checked from the composed config.

params.* shared with the simulator (schedulers, baseline, aggregation_mode) + params.runtime.* (questions,
expert profiles, memory) + backend.runtime.* (the Ray pool) + engine limits + placement + aggregation; a bad
value is a ConfigError naming the key and the fix.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from tessera.experiments.backends.runtime import runtime_settings
from tessera.experiments.config import ConfigError
from tessera.paths import REPO_ROOT
from tessera.placement import PLACERS, MosaicConfig
from tessera.workload.moa_questions import SKILLS
from tessera.workload.moa_real import DEFAULT_AGGREGATOR, DEFAULT_EXPERTS, RealExpert, build_experts

RUNTIME_KEYS = ("model_folder", "experts", "aggregator", "num_questions", "validation_questions", "experts_per_query",
                "max_output_tokens", "worker_memory_gib", "placement_batch_size", "repeats")


@dataclass(frozen=True)
class RuntimeMoASettings:
    schedulers: tuple[str, ...]
    baseline: str
    experts: tuple[RealExpert, ...]
    aggregator: RealExpert
    num_questions: int
    validation_questions: int
    experts_per_query: int
    worker_memory_gib: float
    placement_batch_size: int
    repeats: int  # rounds of every scheduler (order rotated per round); the table reports medians and spread
    workers: int
    threads_per_worker: int
    ray_address: str | None
    device: str
    dtype: str | None
    max_num_seqs: int
    max_num_batched_tokens: int
    placement: dict
    aggregation: dict
    seed: int
    quick: bool

    def describe(self) -> dict:
        out = asdict(self)
        out["experts"] = [asdict(e) for e in self.experts]
        out["aggregator"] = asdict(self.aggregator)
        return out


def read_settings(cfg: DictConfig, raw_params: dict) -> RuntimeMoASettings:
    schedulers = tuple(raw_params.get("schedulers") or ())
    bad = [s for s in schedulers if s not in PLACERS]
    if bad or not schedulers:
        raise ConfigError(f"params.schedulers={list(schedulers)}: use names from {list(PLACERS)}")
    baseline = raw_params.get("baseline")
    if baseline not in schedulers:
        raise ConfigError(f"params.baseline={baseline!r} must be one of params.schedulers {list(schedulers)}")
    if raw_params.get("aggregation_mode", "barrier") != "barrier":
        raise ConfigError(f"params.aggregation_mode={raw_params['aggregation_mode']!r}: backend=runtime runs the "
                          "paper's barrier between the stages only; drop it or use backend=sim")
    rt = dict(raw_params.get("runtime") or {})
    unknown = sorted(set(rt) - set(RUNTIME_KEYS))
    if unknown:
        raise ConfigError(f"params.runtime.{unknown[0]} is not a key; params.runtime has {', '.join(RUNTIME_KEYS)}")
    folder = _folder(rt.get("model_folder"), "params.runtime.model_folder")
    experts, aggregator = _experts(rt, folder)
    ints = {k: rt.get(k) for k in ("num_questions", "validation_questions", "experts_per_query",
                                   "placement_batch_size", "repeats")}
    for key, value in ints.items():
        if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            raise ConfigError(f"params.runtime.{key}={value!r}: use a whole number >= 1")
    if ints["experts_per_query"] > len(experts):
        raise ConfigError(f"params.runtime.experts_per_query={ints['experts_per_query']} exceeds the "
                          f"{len(experts)} expert profiles: use 1..{len(experts)}")
    memory = rt.get("worker_memory_gib")
    if not (isinstance(memory, (int, float)) and memory > 0):
        raise ConfigError(f"params.runtime.worker_memory_gib={memory!r}: use a positive size in GiB")
    backend = runtime_settings(OmegaConf.to_container(cfg.backend.runtime, resolve=True) if cfg.backend.get("runtime")
                               else None)
    for key in ("workers", "threads_per_worker"):
        value = backend[key]
        if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            raise ConfigError(f"backend.runtime.{key}={value!r}: use a whole number >= 1")
    if backend["device"] not in ("auto", "cpu") and not str(backend["device"]).startswith("cuda"):
        raise ConfigError(f"backend.runtime.device={backend['device']!r}: use auto, cpu or cuda")
    placement = OmegaConf.to_container(cfg.placement, resolve=True) if cfg.placement else {}
    try:
        MosaicConfig(**placement)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"placement: {err}") from None
    aggregation = OmegaConf.to_container(cfg.aggregation, resolve=True) if cfg.aggregation else {"name": "unanimous"}
    return RuntimeMoASettings(
        schedulers=schedulers, baseline=baseline, experts=tuple(experts), aggregator=aggregator,
        num_questions=ints["num_questions"], validation_questions=ints["validation_questions"],
        experts_per_query=ints["experts_per_query"], worker_memory_gib=float(memory),
        placement_batch_size=ints["placement_batch_size"], repeats=ints["repeats"], workers=backend["workers"],
        threads_per_worker=backend["threads_per_worker"], ray_address=backend["ray_address"],
        device=str(backend["device"]), dtype=backend["dtype"],
        max_num_seqs=int(backend["max_num_seqs"] or cfg.engine.max_num_seqs),
        max_num_batched_tokens=int(backend["max_num_batched_tokens"] or cfg.engine.max_num_batched_tokens),
        placement=placement, aggregation=aggregation, seed=int(cfg.seed), quick=bool(raw_params.get("quick")))


def _folder(value, key: str) -> str:
    if not value:
        raise ConfigError(f"{key} is empty: give a checkpoint folder (e.g. models/smollm2-135m-instruct)")
    path = Path(value)
    path = path if path.is_absolute() else REPO_ROOT / path
    if not (path / "config.json").exists():
        hint = " (build it with `make smollm2`)" if "smollm2" in str(value) else ""
        raise ConfigError(f"{key}={value!r}: no checkpoint there (config.json missing){hint}; use a Llama-format "
                          "checkpoint folder, e.g. models/tessera-tiny-byte")
    return str(path)


def _experts(rt: dict, folder: str) -> tuple[list[RealExpert], RealExpert]:
    cap = rt.get("max_output_tokens")
    if cap is not None and not (isinstance(cap, int) and cap >= 1):
        raise ConfigError(f"params.runtime.max_output_tokens={cap!r}: use null or a whole number >= 1")
    specs = rt.get("experts") or [dict(e) for e in DEFAULT_EXPERTS]
    agg_spec = rt.get("aggregator") or dict(DEFAULT_AGGREGATOR)
    try:
        experts = build_experts([dict(s) for s in specs])
        aggregator = RealExpert(**{**agg_spec, "name": DEFAULT_AGGREGATOR["name"]})
    except (ValueError, TypeError) as err:
        raise ConfigError(f"params.runtime.experts / aggregator: {err}") from None

    def resolved(e: RealExpert, key: str) -> RealExpert:
        model = _folder(e.model, f"{key}.model") if e.model else folder
        budget = min(e.max_tokens, cap) if cap else e.max_tokens
        skills = e.skills or dict.fromkeys(SKILLS, 1.0)
        return RealExpert(e.name, e.kind, e.system_prompt, e.temperature, budget, model, skills)

    return ([resolved(e, f"params.runtime.experts[{i}]") for i, e in enumerate(experts)],
            resolved(aggregator, "params.runtime.aggregator"))
