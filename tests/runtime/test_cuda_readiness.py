"""CUDA-readiness of the runtime, checked on the CPU: what would stall or race on a GPU.

- a decode step makes a bounded number of device->host transfers, whatever the number of layers
  (no per-layer ``bool(tensor)`` / ``.cpu()``), counted on the runtime's own code;
- decode attention takes the FULL-head flags from the host instead of reading the device tensor;
- batched sampling gives exactly the per-row tokens (greedy and seeded temperature/top-p rows);
- the KV cache's side-stream protocol (fake stream and events): freed and dropped blocks wait for
  their event, ``release`` orders the compute stream behind the copies instead of a host sync;
- the Triton copy wrapper handles non-contiguous id tensors (the kernel indexes them with stride 1);
- ``device="auto"`` resolution and clear errors for an unavailable or unknown device.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tessera.kernels import dispatch
from tessera.kvcache.summary import PageMoves
from tessera.runtime.attention import DecodeLayerPlan, decode_attention
from tessera.runtime.checkpoint import load_checkpoint, save_checkpoint
from tessera.runtime.config import ModelConfig
from tessera.runtime.engine import Engine, EngineConfig, resolve_device
from tessera.runtime.kv_cache import KVCache, SeqTables
from tessera.runtime.model import Transformer
from tessera.runtime.sampling import sample, sample_batch
from tessera.runtime.sequence import SamplingParams

RUNTIME_FILES = {str(Path(m.__file__).resolve()) for m in (
    sys.modules["tessera.runtime.engine"], sys.modules["tessera.runtime.attention"],
    sys.modules["tessera.runtime.sampling"], sys.modules["tessera.runtime.kv_cache"])}


def tiny_model(tmp_path, layers: int):
    config = ModelConfig(vocab_size=64, hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
                         num_attention_heads=4, num_key_value_heads=2, eos_token_id=63)
    model = Transformer(config)
    model.init_weights(seed=0, std=0.2)
    save_checkpoint(model, tmp_path)
    return load_checkpoint(tmp_path)


class SyncCounter:
    """Counts tensor -> host conversions whose caller is the runtime's own code (engine, attention,
    sampling, kv_cache). On CUDA each one is a device->host sync."""

    METHODS = ("item", "tolist", "cpu", "__bool__", "__int__", "__float__", "__index__")

    def __init__(self, monkeypatch):
        self.count = 0
        for name in self.METHODS:
            original = getattr(torch.Tensor, name)
            monkeypatch.setattr(torch.Tensor, name, self._wrap(original))

    def _wrap(self, original):
        counter = self

        def wrapper(self, *args, **kwargs):
            caller = sys._getframe(1).f_code.co_filename
            if str(Path(caller).resolve()) in RUNTIME_FILES:
                counter.count += 1
            return original(self, *args, **kwargs)
        return wrapper


@pytest.mark.parametrize("policy,params", [("full", {}), ("flexicache", {"topk_pages": 2, "rerank_interval": 1}),
                                           ("quest", {"topk_pages": 2})])
def test_decode_step_syncs_do_not_grow_with_layers(tmp_path, monkeypatch, policy, params):
    """Greedy decode steps: at most 2 transfers per step (sampled ids, the due layers' top-K), for 2 and
    4 layers alike. Before the fix: 2 per layer (FULL-head flags) + 1 per due layer + 1 per request."""
    per_step = {}
    for layers in (2, 4):
        model = tiny_model(tmp_path / f"m{layers}", layers)
        eng = Engine(model, None, EngineConfig(num_device_blocks=4096, kvpolicy=policy, kvpolicy_params=params))
        for n in (40, 70, 90):
            eng.add_request([1 + i % 60 for i in range(n)], SamplingParams(max_tokens=8, ignore_eos=True))
        while any(s.num_computed_tokens < s.num_prompt_tokens for s in eng.sequences.values()):
            eng.step()  # prefill
        eng.step()
        counter = SyncCounter(monkeypatch)
        steps = 0
        for _ in range(5):
            eng.step()
            steps += 1
        monkeypatch.undo()
        per_step[layers] = counter.count / steps
    assert per_step[2] <= 2 and per_step[4] <= 2, per_step


def test_decode_attention_uses_host_flags_not_the_device_tensor():
    torch.manual_seed(0)
    B, Hkv, G, D, P = 2, 2, 2, 16, 3
    pool = torch.randn(2, 16, 16, D)
    tables = torch.arange(B * Hkv * P, dtype=torch.int32).view(B, Hkv, P) % 16
    lens = torch.tensor([40, 33], dtype=torch.int32)
    q = torch.randn(B, Hkv * G, D)
    full = torch.tensor([True, False])
    pages = torch.tensor([[[0, 2], [1, -1]], [[2, -1], [0, 1]]], dtype=torch.int32)
    expected = decode_attention(q, pool, tables, lens, DecodeLayerPlan(full, pages, None, False), None)

    class Untouchable:
        def __getattr__(self, name):
            raise AssertionError(f"full_heads.{name} read on the hot path")

    plan = DecodeLayerPlan(Untouchable(), pages, None, False, any_full=True, all_full=False,
                           full_q=full.repeat_interleave(G))
    torch.testing.assert_close(decode_attention(q, pool, tables, lens, plan, None), expected)


def test_sample_batch_equals_per_row_sample():
    torch.manual_seed(0)
    logits = torch.randn(5, 50) * 3
    params = [SamplingParams(), SamplingParams(temperature=0.8), SamplingParams(temperature=1.0, top_p=0.5),
              SamplingParams(), SamplingParams(temperature=1.3, seed=7)]
    gens_a = [torch.Generator().manual_seed(i) for i in range(5)]
    gens_b = [torch.Generator().manual_seed(i) for i in range(5)]
    one_by_one = [[sample(logits[i], params[i], gens_a[i]) for i in range(5)] for _ in range(3)]
    batched = [sample_batch(logits, params, gens_b) for _ in range(3)]
    assert batched == one_by_one
    assert sample_batch(logits[:0], [], []) == []


# ------------------------------------------------------------------------------- stream protocol
class FakeEvent:
    instances: list["FakeEvent"] = []

    def __init__(self):
        self.done = False
        FakeEvent.instances.append(self)

    def record(self, stream):
        stream.recorded += 1

    def query(self):
        return self.done

    def synchronize(self):
        raise AssertionError("host sync")


class FakeStream:
    def __init__(self):
        self.recorded = 0
        self.waited_on: list = []

    def wait_stream(self, other):
        self.waited_on.append(other)


@pytest.fixture
def fake_cuda_cache(monkeypatch):
    cache = KVCache(1, 1, 16, num_device_blocks=8, num_host_blocks=8)
    side, compute = FakeStream(), FakeStream()
    cache._stream = side
    copies = []
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: compute)
    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    monkeypatch.setattr(KVCache, "_copy", lambda self, sp, dp, s, d: copies.append((sp is self.kv, list(s), list(d))))
    FakeEvent.instances = []
    return cache, side, compute, copies


def test_freed_and_dropped_blocks_wait_for_their_event(fake_cuda_cache):
    cache, side, compute, copies = fake_cuda_cache
    t = SeqTables(1, 1, 4)
    cache.grow(t, 0, 64)  # 4 pages -> blocks 0..3
    cache.apply_moves(t, PageMoves(d2h=np.array([[0, 0, 0], [0, 0, 1]], np.int32)))
    assert side.waited_on == [compute]  # the copy waits for this step's K/V
    assert copies == [(True, [0, 1], [0, 1])]
    free_before = cache.device_blocks.num_free
    cache.apply_moves(t, PageMoves(free=np.array([[0, 0, 0]], np.int32), drop=np.array([[0, 0, 2]], np.int32)))
    assert cache.device_blocks.num_free == free_before  # both blocks wait for the side stream
    assert cache.num_pending_blocks == 2
    cache.poll()
    assert cache.num_pending_blocks == 2
    for e in FakeEvent.instances:
        e.done = True
    cache.poll()
    assert cache.num_pending_blocks == 0 and cache.device_blocks.num_free == free_before + 2


def test_reload_makes_the_compute_stream_wait(fake_cuda_cache):
    cache, side, compute, copies = fake_cuda_cache
    t = SeqTables(1, 1, 4)
    cache.grow(t, 0, 64)
    cache.apply_moves(t, PageMoves(d2h=np.array([[0, 0, 0]], np.int32)))
    cache.apply_moves(t, PageMoves(free=np.array([[0, 0, 0]], np.int32)))
    cache.apply_moves(t, PageMoves(d2h=np.array([[0, 0, 1]], np.int32)))
    assert compute.waited_on == []  # D2H overlaps the next step
    cache.apply_moves(t, PageMoves(h2d=np.array([[0, 0, 0]], np.int32), free=np.array([[0, 0, 1]], np.int32)))
    assert compute.waited_on == [side]  # the next forward reads the reload


def test_release_orders_compute_behind_copies_without_a_host_sync(fake_cuda_cache):
    cache, side, compute, copies = fake_cuda_cache
    t = SeqTables(1, 1, 4)
    cache.grow(t, 0, 64)
    cache.apply_moves(t, PageMoves(d2h=np.array([[0, 0, 0], [0, 0, 1]], np.int32)))
    cache.apply_moves(t, PageMoves(free=np.array([[0, 0, 0]], np.int32)))
    cache.release(t)  # FakeEvent.synchronize raises: no host sync allowed
    assert compute.waited_on == [side]
    assert cache.num_pending_blocks == 0
    assert cache.device_blocks.num_used == 0 and cache.host_blocks.num_used == 0


# ------------------------------------------------------------------------------- copy wrapper
def test_triton_copy_blocks_with_non_contiguous_ids():
    src = torch.randn(2, 6, 16, 16)
    dst = torch.zeros(2, 6, 16, 16)
    pairs = torch.tensor([[4, 0], [1, 5], [2, 3]])
    s_ids, d_ids = pairs[:, 0], pairs[:, 1]  # stride 2
    assert not s_ids.is_contiguous()
    dispatch.copy_blocks(src, dst, s_ids, d_ids, impl="triton")
    expected = torch.zeros_like(dst)
    expected[:, [0, 5, 3]] = src[:, [4, 1, 2]]
    torch.testing.assert_close(dst, expected)


# ------------------------------------------------------------------------------- devices
def test_resolve_device():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="not a torch device"):
        resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


def test_cpu_cache_is_not_pinned_and_has_no_stream():
    cache = KVCache(1, 1, 16, num_device_blocks=4, num_host_blocks=4)
    assert cache._stream is None and not cache.host.is_pinned()
