"""The structured config of a Tessera run, registered in Hydra's ConfigStore, and its semantic validation.

OmegaConf checks types; `validate` checks values against the catalogs and ranges and raises ConfigError
naming the key, the allowed values and the fix (the app prints it on one line and exits with code 2).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


class ConfigError(ValueError):
    """A config value that cannot be used; the message names the key, what is allowed and the fix."""


def override_key(override: str) -> str:
    """The dotted key a command-line override sets: its +, ++ or ~ prefix and its value dropped."""
    return override.lstrip("+~").split("=", 1)[0]


@dataclass
class ModelConf:
    name: str = "Llama-2-7B"
    path: str | None = None  # a local Llama-family checkpoint folder: the spec comes from its config.json
    build: str | None = None  # how to make `path` on first use when it is missing (tessera/model_builds.py)


@dataclass
class ClusterConf:
    gpu: str | None = "H100-SXM-80GB"  # None only with calibration
    num_workers: int = 1
    tp: int = 1
    pp: int = 1  # pipeline stages, each on tp GPUs of the same node (tessera/cost/pipeline.py)
    pp_microbatches: int | None = None  # micro-batches per iteration with pp > 1 (None: pp)
    router: str = "round_robin"
    calibration: str | None = None  # a calibrate_runtime folder: measured spec + profiled costs, not a catalog GPU
    kv_gib: float | None = None  # KV reservation per GPU in GiB (None: vLLM's rule, memory left after weights)


@dataclass
class EngineConf:
    """vLLM-like engine limits of every worker."""

    block_size: int = 16
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192
    chunked_prefill: bool = True
    watermark: float = 0.01
    gpu_memory_utilization: float = 0.9
    activation_reserve_gib: float = 2.0
    scheduler: str = "vllm_v1"  # vllm_v1 | vllm_v0 | sarathi | orca (tessera/scheduling/families.py)
    num_scheduler_steps: int = 1  # vLLM 0.5-0.6 multi-step groups (vllm_v0 only; tessera/scheduling/vllm_v0.py)


@dataclass
class CostConf:
    kind: str = "profiled"  # profiled | roofline
    params: dict[str, Any] = field(default_factory=dict)  # RooflineEfficiency fields etc.


@dataclass
class BackendConf:
    kind: str = "sim"
    cost: CostConf = field(default_factory=CostConf)
    fast_forward: bool = True  # simulate decode-only stretches as one event (exact; False for debugging)
    runtime: dict[str, Any] = field(default_factory=dict)  # backend=runtime settings (conf/backend/runtime.yaml)


@dataclass
class OutputConf:
    print_table: bool = True
    figures: bool = True
    progress: bool = True
    # simulator per-iteration records (experiments/batch_records.py): auto | true | false; auto writes them for
    # small runs only (batches.parquet up to 20,000 requests, the Perfetto trace.json up to 2,000)
    batch_log: str = "auto"
    chrome_trace: str = "auto"


@dataclass
class RunConf:
    experiment: str = MISSING
    seed: int = 0
    sweep_name: str = "sweep"
    force: bool = False  # re-run even when this run dir already holds complete results
    backend: BackendConf = field(default_factory=BackendConf)
    model: ModelConf = field(default_factory=ModelConf)
    cluster: ClusterConf = field(default_factory=ClusterConf)
    engine: EngineConf = field(default_factory=EngineConf)
    workload: dict[str, Any] = field(default_factory=dict)
    kvpolicy: dict[str, Any] = field(default_factory=lambda: {"name": "full"})  # conf/kvpolicy/
    placement: dict[str, Any] = field(default_factory=dict)  # conf/placement/ (MoA experiments)
    aggregation: dict[str, Any] = field(default_factory=dict)  # conf/aggregation/ (MoA experiments)
    params: dict[str, Any] = field(default_factory=dict)  # experiment-specific settings (see conf/experiment/)
    engine_profile: dict[str, Any] = field(default_factory=lambda: {"name": "tessera_default"})  # conf/engine_profile/
    output: OutputConf = field(default_factory=OutputConf)
    notes: Optional[str] = None


def register_configs() -> None:
    ConfigStore.instance().store(name="run_schema", node=RunConf)
