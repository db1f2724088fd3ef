"""The runtime backend: replays a workload's requests on the real engine (runtime/) and returns the same
BackendResult as the simulator (shared per-request schema, measured wall-clock times).

Trace workloads carry token counts only: each prompt is synthesised deterministically (a generator seeded
with (run seed, request id) over the tokenizer's ordinary ids) and generation runs with ignore_eos and
max_tokens = the request's output tokens, so the output lengths match the trace. Arrivals are honoured on
the engine clock (a request is not admitted before it); runtime.realtime=false skips idle gaps.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from tessera.experiments.backends.sim import BackendResult
from tessera.experiments.config import ConfigError
from tessera.experiments.resolve import RunSpec
from tessera.runtime.errors import CheckpointError
from tessera.sim.kv_setup import KVSetup
from tessera.types import Request

DEFAULTS: dict[str, Any] = {"device": "auto", "dtype": None,
                            "realtime": False, "max_num_seqs": None, "max_num_batched_tokens": None,
                            "device_kv_gib": 0.25, "num_device_blocks": None, "host_kv_gib": 0.5,
                            "max_prompt_tokens": None, "max_output_tokens": None, "num_threads": None,
                            # experiment=mosaic only: the Ray worker pool (refused elsewhere, experiments/overrides.py)
                            "workers": 2, "threads_per_worker": 1, "ray_address": None}


def runtime_settings(conf: Mapping[str, Any] | None) -> dict[str, Any]:
    conf = dict(conf or {})
    if "model_path" in conf:
        raise ConfigError("backend.runtime.model_path is gone: the model group says what runs, e.g. "
                          "model=tessera_tiny_byte, model=smollm2, or model.path=<checkpoint folder>")
    unknown = sorted(set(conf) - set(DEFAULTS))
    if unknown:
        raise ConfigError(f"backend.runtime has no key {', '.join(unknown)}; its keys are {', '.join(DEFAULTS)}")
    return {**DEFAULTS, **conf}


def checkpoint_folder(spec: RunSpec) -> Path:
    """The folder backend=runtime loads: model.path (a catalog model has no weights to run)."""
    if spec.model_path is None:
        raise ConfigError(f"backend=runtime runs a local checkpoint, and model {spec.model.name!r} is a catalog "
                          "entry without weights: use model=tessera_tiny_byte, model=smollm2, or set "
                          "model.path=<checkpoint folder>")
    return spec.model_path


def synth_prompt(request_id: int, length: int, vocab: int, banned: set[int], seed: int) -> list[int]:
    rng = np.random.default_rng([seed, request_id])
    ids = rng.integers(0, vocab, size=length)
    for b in banned:
        ids[ids == b] = (b + 1) % vocab
    return ids.tolist()


def run_runtime(spec: RunSpec, requests: Sequence[Request], runtime_conf: Mapping[str, Any] | None,
                kvpolicy_conf: Mapping[str, Any] | None, *, seed: int = 0, progress: bool = False,
                on_engine: Callable[[Any], None] | None = None) -> BackendResult:
    """on_engine(engine) runs once the engine is built, before any request (e.g. to attach a step recorder)."""
    import torch

    from tessera.runtime.engine import Engine, EngineConfig
    from tessera.runtime.sequence import SamplingParams

    rt = runtime_settings(runtime_conf)
    if rt["num_threads"]:
        torch.set_num_threads(int(rt["num_threads"]))
    try:
        kv = KVSetup.from_conf(kvpolicy_conf or {"name": "full"})
    except ValueError as err:
        raise ConfigError(str(err)) from None
    s = spec.scheduler
    try:
        config = EngineConfig(max_num_seqs=rt["max_num_seqs"] or s.max_num_seqs,
                              max_num_batched_tokens=rt["max_num_batched_tokens"] or s.max_num_batched_tokens,
                              chunked_prefill=s.chunked_prefill, watermark=s.watermark,
                              num_device_blocks=rt["num_device_blocks"], device_kv_gib=rt["device_kv_gib"],
                              host_kv_gib=rt["host_kv_gib"], kvpolicy=kv.name, kvpolicy_params=dict(kv.params),
                              seed=seed, realtime=bool(rt["realtime"]))
        engine = Engine.from_checkpoint(checkpoint_folder(spec), config, device=rt["device"], dtype=rt["dtype"])
    except ConfigError:
        raise
    except CheckpointError as err:
        raise ConfigError(f"model.path={str(spec.model_path)!r}: {err}") from None
    except (ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"backend.runtime / kvpolicy: {str(err).strip(chr(34))}") from None
    if on_engine is not None:
        on_engine(engine)
    vocab = engine.model.config.vocab_size
    if engine.tokenizer is not None:
        vocab = min(vocab, 256 if getattr(engine.tokenizer, "kind", "") == "byte" else engine.tokenizer.vocab_size)
    banned = set(engine.eos_ids)
    for r in requests:
        prompt_len = min(r.prompt_tokens, rt["max_prompt_tokens"] or r.prompt_tokens)
        out_len = min(r.output_tokens, rt["max_output_tokens"] or r.output_tokens)
        prompt = synth_prompt(r.request_id, max(prompt_len, 1), vocab, banned, seed)
        params = SamplingParams(max_tokens=max(out_len, 1), ignore_eos=True)
        try:
            engine.add_request(prompt, params, arrival_s=r.arrival_s, request_id=r.request_id)
        except MemoryError as err:
            raise ConfigError(f"backend.runtime: {err}") from None
    engine.run(progress=progress)
    frame = engine.records()
    by_id = {r.request_id: r for r in requests}
    frame["query_id"] = pd.array([by_id[i].query_id for i in frame["request_id"]], dtype="Int64")
    frame["stage"] = pd.array([by_id[i].stage for i in frame["request_id"]], dtype="string")
    stats = engine.stats()
    workers = pd.DataFrame([{"worker": 0, "model": engine.name, "gpu": str(engine.device), "tp": 1, "pp": 1,
                             "kv_blocks": stats["device_blocks"], "iterations": stats["steps"],
                             "busy_s": float("nan"), "busy_fraction": float("nan"),
                             "preemptions": stats["preemptions"]}])
    kv_stats = {} if kv.name == "full" else {
        "policy": kv.name, "pool_head_pages": stats["device_blocks"], "host_pool_head_pages": stats["host_blocks"],
        "pcie_h2d_bytes": stats["pcie_h2d_bytes"], "pcie_d2h_bytes": stats["pcie_d2h_bytes"],
        "num_reloads": stats["num_reloads"], "stall_s": 0.0,  # reloads land before the next forward
        "peak_host_kv_bytes": float(engine.peak_host_blocks * engine.cache.page_bytes)}
    result = BackendResult(requests=frame, kv_usage=engine.kv_usage(), workers=workers, kv=kv_stats,
                           kv_requests=engine.kv_requests() if kv_stats else None)
    result.model_name = engine.name
    # what actually ran, for summary.json: the checkpoint, the device and the engine settings in force
    result.engine_stats = {**stats, "model_folder": str(checkpoint_folder(spec)), "model_name": spec.model.name,
                           "device": str(engine.device), "dtype": str(engine.dtype).replace("torch.", ""),
                           "torch_threads": torch.get_num_threads(), "workers": 1,
                           "engine": {k: v for k, v in asdict(engine.config).items()}}
    return result
