"""Measurements on this machine for calibrate_runtime.py: peak numbers, layer-op times, engine step times.

- machine_numbers: the numbers a GPUSpec needs, measured (fp32 matmul FLOP/s, copy bandwidth) or read
  from the OS (RAM), at the torch thread count in force.
- layer_op_times: one decoder layer's non-attention ops (qkv incl. norm and RoPE; o_proj, residual, MLP)
  for n tokens: what tessera/cost/profile.py calls a layer profile.
- StepRecorder: wraps a live Engine so every step() is timed (wall clock, and process CPU time to see
  how much of the core the shared machine gave us) and its batch recorded in the simulator's
  BatchShape counters (tessera/sim/worker.py's rule), without touching runtime/engine.py.
- step_sweep: engine steps over prefill sizes and batch x context decodes (the fitting data).
"""
from __future__ import annotations

import os
import time
from statistics import median

import numpy as np
import pandas as pd
import torch

from tessera.runtime.sequence import SamplingParams


def machine_numbers(matmul_n: int = 1024, copy_mib: int = 256, reps: int = 5,
                    device: torch.device | str = "cpu") -> dict:
    """Best-of-reps fp32 matmul FLOP/s and copy bandwidth (read + write bytes / s), RAM (or GPU memory)
    bytes, torch threads. On CPU timed in process CPU time (a shared machine's wall clock would measure
    the contention); on CUDA in wall time around a device synchronize."""
    device = torch.device(device)
    a, b = (torch.randn(matmul_n, matmul_n, device=device) for _ in range(2))
    src = torch.empty(copy_mib * 2**20 // 4, device=device)
    src.fill_(1.0)
    dst = torch.empty_like(src)
    dst.fill_(0.0)  # touch the pages before timing
    flops = 2 * matmul_n**3 / _best_time(lambda: torch.mm(a, b), reps, device)
    bandwidth = 2 * src.numel() * 4 / _best_time(lambda: dst.copy_(src), reps, device)
    if device.type == "cuda":
        memory = torch.cuda.get_device_properties(device).total_memory
    else:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {"fp32_matmul_flops": flops, "copy_bandwidth_Bps": bandwidth, "ram_bytes": float(memory),
            "torch_threads": torch.get_num_threads(), "matmul_n": matmul_n, "copy_mib": copy_mib,
            "device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None}


def _best_time(fn, reps: int, device: torch.device) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        c0 = _clock(device)
        fn()
        times.append(_clock(device) - c0)
    return min(times)


def _clock(device: torch.device) -> float:
    """Process CPU time on CPU; wall time after the queued GPU work on CUDA (CPU time would measure the host)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return time.perf_counter()
    return time.process_time()


@torch.inference_mode()
def layer_op_times(model, tokens=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024), reps: int = 7) -> pd.DataFrame:
    """Median ms of one layer's non-attention ops (qkv + finish, attention output zeros) per token count:
    wall clock (time_ms) and process CPU time (cpu_ms)."""
    layer = model.layers[0]
    c = model.config
    weight = model.model.embed_tokens.weight
    device = weight.device
    rows = []
    for n in tokens:
        h = torch.randn(1, n, c.hidden_size, dtype=weight.dtype, device=device)
        rope = model.rope(torch.arange(n, device=device))
        o = torch.zeros(1, c.num_attention_heads, n, c.head_dim, dtype=h.dtype, device=device)
        layer.finish(h, o), layer.qkv(h, rope)  # warm-up
        times, cpu = [], []
        for _ in range(reps):
            c0 = _clock(device)
            t0 = time.perf_counter()
            layer.qkv(h, rope)
            layer.finish(h, o)
            cpu.append(_clock(device) - c0)  # on CUDA the device time, wall clock around a synchronize
            times.append(time.perf_counter() - t0 if device.type != "cuda" else cpu[-1])
        rows.append({"num_tokens": n, "time_ms": median(times) * 1e3, "cpu_ms": median(cpu) * 1e3})
    return pd.DataFrame(rows)


class StepRecorder:
    """Times every Engine.step and records its batch as BatchShape counters (one row per step)."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.rows: list[dict] = []
        self._pending: dict | None = None
        self._schedule = engine.scheduler.schedule
        self._step = engine.step
        engine.scheduler.schedule = self._record_schedule  # instance attributes shadow the methods
        engine.step = self._timed_step

    def _record_schedule(self, waiting, running, pool):
        batch = self._schedule(waiting, running, pool)
        row = {"prefill_tokens": 0, "prefill_attn_pairs": 0.0, "decode_seqs": 0, "decode_kv_tokens": 0.0,
               "prefill_seqs": 0}
        for seq, n in zip(batch.seqs, batch.num_scheduled_tokens):
            c = seq.num_computed_tokens
            if seq.rk.phase == "decoding":
                row["decode_seqs"] += 1
                row["decode_kv_tokens"] += c + 1
            else:
                row["prefill_tokens"] += n
                row["prefill_seqs"] += 1
                row["prefill_attn_pairs"] += n * c + n * (n + 1) / 2
        row["request_ids"] = " ".join(str(seq.request_id) for seq in batch.seqs)
        self._pending = row if batch.seqs else None
        return batch

    def _timed_step(self):
        t0, c0 = time.perf_counter(), time.process_time()
        done = self._step()  # a step ends with the sampled tokens' device->host copy: GPU work included
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        if self.engine.device.type == "cuda":
            cpu = dt  # host CPU time says nothing about the GPU's share
        if self._pending is not None:
            self.rows.append({**self._pending, "time_s": dt, "cpu_s": cpu, "engine_t_s": self.engine.now()})
            self._pending = None
        return done

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)


def step_sweep(make_engine, prefill_tokens=(16, 64, 128, 256, 512, 1024, 2048),
               batches=(1, 2, 4, 8, 16), contexts=(128, 512, 2048), decode_steps: int = 8,
               seed: int = 0) -> pd.DataFrame:
    """Engine steps of (a) one request per prefill size (+3 decodes), (b) B requests of context C, each
    generating enough tokens that all B prompts are prefilled (chunked, under the token budget) and the B
    then decode `decode_steps` steps together. make_engine() returns a fresh Engine; a warm-up run first."""
    rng = np.random.default_rng(seed)
    frames = []

    def run(requests, kind, **tags):
        engine = make_engine()
        rec = StepRecorder(engine)
        vocab = min(250, engine.model.config.vocab_size - 2)  # ordinary ids, below any specials
        for length, out in requests:
            engine.add_request(rng.integers(0, vocab, length).tolist(), SamplingParams(max_tokens=out, ignore_eos=True),
                               arrival_s=0.0)
        engine.run()
        frames.append(rec.frame().assign(sweep=kind, **tags))
        return engine

    budget = run([(256, 4)], "warmup").config.max_num_batched_tokens
    for t in prefill_tokens:
        run([(t, 4)], "prefill", prompt=t, batch=1)
    for c in contexts:
        for b in batches:
            prefill_steps = -(-b * c // budget)  # decodes of the first requests overlap the others' prefill
            run([(c, decode_steps + prefill_steps + 1)] * b, "decode", prompt=c, batch=b)
    out = pd.concat(frames, ignore_index=True)
    return out[out["sweep"] != "warmup"].reset_index(drop=True)
