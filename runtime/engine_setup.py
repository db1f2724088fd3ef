"""The engine's configuration and set-up: EngineConfig (limits, pool sizes, KV policy), the device, the ModelSpec of a
loaded model, a KV policy by name, and the device pool as the shared batch scheduler sees it (SchedulerPool).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from tessera.kernels.layout import PAGE_SIZE
from tessera.kvcache import make_policy
from tessera.kvcache.head_lists import shipped_unstable_heads
from tessera.runtime.model import Transformer
from tessera.runtime.sequence import Sequence
from tessera.scheduling import SchedulerConfig
from tessera.types import ModelSpec

GIB = 2**30


@dataclass
class EngineConfig:
    """Engine limits (vLLM names), pool sizes and the KV policy. Validated on construction."""

    max_num_seqs: int = 16
    max_num_batched_tokens: int = 512
    chunked_prefill: bool = True
    watermark: float = 0.01
    num_device_blocks: int | None = None  # head-pages in the device pool; None: from device_kv_gib
    device_kv_gib: float = 0.25
    host_kv_gib: float = 0.5  # host pool, allocated only for policies that offload
    kvpolicy: str = "full"
    kvpolicy_params: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    realtime: bool = False  # True: sleep until the next arrival when idle; False: skip idle time
    check_invariants: bool = True  # device blocks held == RequestKV.device_pages after every event

    def __post_init__(self) -> None:
        checks = [("device_kv_gib", self.device_kv_gib > 0, "a positive size in GiB"),
                  ("host_kv_gib", self.host_kv_gib >= 0, "a size in GiB >= 0"),
                  ("num_device_blocks", self.num_device_blocks is None or self.num_device_blocks >= 1,
                   "null or a block count >= 1")]
        for name, ok, allowed in checks:
            if not ok:
                raise ValueError(f"runtime.{name}={getattr(self, name)!r} is invalid: use {allowed}")
        self.scheduler_config()  # validates the scheduler limits

    def scheduler_config(self) -> SchedulerConfig:
        return SchedulerConfig(block_size=PAGE_SIZE, max_num_seqs=self.max_num_seqs,
                               max_num_batched_tokens=self.max_num_batched_tokens,
                               chunked_prefill=self.chunked_prefill, watermark=self.watermark)


def resolve_device(device: torch.device | str | None) -> torch.device:
    """"auto" (or None): cuda when available, else cpu. An explicit cuda device that is not available
    raises ValueError naming the fix, instead of failing later inside a checkpoint load."""
    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"device={device!r} is not a torch device ({err}): use 'auto', 'cpu' or 'cuda[:N]'") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={str(device)!r} but CUDA is not available: use device='auto' or 'cpu'")
    return device


def model_spec(model: Transformer, name: str) -> ModelSpec:
    """The catalog-style ModelSpec of a loaded model (what the KV policies are built for)."""
    c = model.config
    dtype = model.model.embed_tokens.weight.dtype
    return ModelSpec(name=name, hf_id=name, num_layers=c.num_hidden_layers, hidden_size=c.hidden_size,
                     num_heads=c.num_attention_heads, num_kv_heads=c.num_key_value_heads, head_dim=c.head_dim,
                     intermediate_size=c.intermediate_size, vocab_size=c.vocab_size,
                     num_params=float(model.num_params()), dtype_bytes=torch.empty((), dtype=dtype).element_size(),
                     max_position=c.max_position_embeddings)


def build_policy(name: str, spec: ModelSpec, params: dict[str, Any] | None = None, seed: int = 0):
    """make_policy with the runtime's defaults for models outside the catalogs.

    flexicache: the paper's shipped unstable-head list when the model has one, else the synthetic class.
    head_split: DuoAttention gates when a pattern maps to the model, else seeded random gates.
    """
    params = dict(params or {})
    if isinstance(params.get("unstable_heads"), list):
        params["unstable_heads"] = tuple(tuple(p) for p in params["unstable_heads"])
    if isinstance(params.get("intervals"), list):
        params["intervals"] = tuple(params["intervals"])
    if name == "flexicache" and "unstable_source" not in params and "unstable_heads" not in params:
        try:
            shipped_unstable_heads(spec.name)
            params["unstable_source"] = "shipped"
        except KeyError:
            params["unstable_source"] = "synthetic"
    if name == "head_split" and params.get("pattern_model") is None:
        from tessera.kvcache.config import HeadSplitConfig
        from tessera.kvcache.policies import HeadSplitPolicy
        try:
            return make_policy(name, spec, **params)
        except (KeyError, ValueError):
            gates = np.random.default_rng(seed).random((spec.num_layers, spec.num_kv_heads))
            return HeadSplitPolicy(spec, HeadSplitConfig(**params), gate_values=gates)
    return make_policy(name, spec, **params)


class SchedulerPool:
    """The device pool as the shared batch scheduler sees it (tessera.interface.KVBlockPool), in head-pages.

    Growth gives every head of every layer blocks for the pages a token range starts (like the
    simulator's HeadPagePool); the policy's moves then return what it does not keep. Admission also
    reserves a request's peak host pages and MinMax blocks, so a running request never runs out of them.
    """

    block_size = PAGE_SIZE

    def __init__(self, engine: "Engine") -> None:
        self.engine = engine
        self.cache = engine.cache
        self.num_blocks = self.cache.device_blocks.num_blocks
        self.num_heads = self.cache.num_heads_total

    @property
    def num_free_blocks(self) -> int:
        return self.cache.device_blocks.num_free

    def blocks_needed(self, seq: Sequence, num_new_tokens: int) -> int:
        c = seq.num_computed_tokens
        return self.num_heads * (-(-(c + num_new_tokens) // PAGE_SIZE) - -(-c // PAGE_SIZE))

    def allocate(self, seq: Sequence, num_new_tokens: int) -> bool:
        need = self.blocks_needed(seq, num_new_tokens)
        fresh = seq.num_computed_tokens == 0 and seq.num_blocks == 0
        if fresh and not self.engine._reserve(seq):
            return False
        if need > self.cache.device_blocks.num_free:
            self.cache.poll(wait=True)
        if need > self.cache.device_blocks.num_free:
            if fresh:
                self.engine._unreserve(seq)
            return False
        c = seq.num_computed_tokens
        self.cache.grow(seq.tables, c, c + num_new_tokens)
        return True

    def free(self, seq: Sequence) -> None:
        self.engine._release(seq)
