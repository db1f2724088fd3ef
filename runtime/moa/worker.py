"""ExpertWorker: the body of one Ray actor (one device: a GPU, or a group of CPU threads).

A residency phase: load each replica in turn (an Engine per replica, its KV pool the plan's reservation;
load time measured), serve the phase's prompts by stepping the co-resident engines in turn (they share the
device, as co-resident replicas share a GPU), then unload. Prompts come with the phase (static plans) or are
pulled from a shared PromptQueue whenever a replica has room (least_loaded).
"""
from __future__ import annotations

import gc
import os
import socket
import time

from tessera.runtime.moa.prompts import PhaseResult, ReplicaSpan, ReplicaSpec, ServedRequest, WorkPrompt


class ExpertWorker:
    """One device's engines. Created through ray.remote (runtime/moa/ray_cluster.py) or directly in tests."""

    def __init__(self, worker_id: int, threads: int, device: str = "cpu", dtype: str | None = None,
                 max_num_seqs: int = 8, max_num_batched_tokens: int = 512, seed: int = 0) -> None:
        import torch

        self.worker_id, self.threads, self.dtype, self.seed = worker_id, threads, dtype, seed
        self.max_num_seqs, self.max_num_batched_tokens = max_num_seqs, max_num_batched_tokens
        if device == "cpu" or not torch.cuda.is_available():
            torch.set_num_threads(threads)
            self.device = "cpu" if device in ("cpu", "auto") else device
        else:
            self.device = "cuda"  # Ray sets CUDA_VISIBLE_DEVICES to this actor's GPU
        self.engines: dict = {}

    def describe(self) -> dict:
        import torch

        return {"worker": self.worker_id, "pid": os.getpid(), "host": socket.gethostname(), "device": self.device,
                "torch_threads": torch.get_num_threads()}

    def call(self, fn, *args, **kwargs):
        """Run fn(*args, **kwargs) in this worker's process (profiling on the worker's own device)."""
        return fn(*args, **kwargs)

    def run_phase(self, replicas: list[ReplicaSpec], prompts: list[WorkPrompt], t0_unix: float,
                  queue=None, recorder=None) -> PhaseResult:
        """Load `replicas`, serve `prompts` (and what `queue` hands out), unload; times since t0_unix.
        recorder: a class wrapping an Engine whose `rows` are its timed steps (the profiling stages pass
        calibrate_runtime_steps.StepRecorder); the rows come back in PhaseResult.steps."""
        now = lambda: time.time() - t0_unix  # noqa: E731
        spans, load_s, offsets, recorders = {}, {}, {}, {}
        for spec in replicas:
            start = now()
            self.engines[spec.expert] = self._load(spec)
            ready = now()
            load_s[spec.expert] = ready - start
            spans[spec.expert] = [start, ready, ready]
            offsets[spec.expert] = ready - self.engines[spec.expert].now()
            if recorder is not None:
                recorders[spec.expert] = recorder(self.engines[spec.expert])
        served: list[ServedRequest] = []
        try:
            for p in prompts:
                self._add(p)
            self._serve(queue, offsets, served, spans, now)
        finally:
            self.engines.clear()
            gc.collect()
        steps = [{**row, "worker": self.worker_id, "expert": e} for e, rec in recorders.items() for row in rec.rows]
        return PhaseResult(self.worker_id, served,
                           [ReplicaSpan(self.worker_id, e, *times) for e, times in spans.items()], load_s, steps)

    def _load(self, spec: ReplicaSpec):
        from tessera.runtime.engine import Engine, EngineConfig

        config = EngineConfig(max_num_seqs=self.max_num_seqs, max_num_batched_tokens=self.max_num_batched_tokens,
                              device_kv_gib=spec.kv_gib, seed=self.seed, check_invariants=False)
        return Engine.from_checkpoint(spec.model_folder, config, device=self.device, dtype=self.dtype)

    def _add(self, p: WorkPrompt) -> None:
        from tessera.runtime.sequence import SamplingParams

        engine = self.engines[p.expert]
        room = engine.model.config.max_position_embeddings - len(p.token_ids)
        params = SamplingParams(temperature=p.temperature, max_tokens=max(1, min(p.max_tokens, room)), seed=p.seed)
        engine.add_request(list(p.token_ids), params, request_id=p.request_id)

    def _refill(self, queue) -> bool:
        """Pull prompts for every replica with free batch slots; True if any came."""
        import ray

        wants = {e: self.max_num_seqs - len(eng.waiting) - len(eng.running) for e, eng in self.engines.items()}
        wants = {e: n for e, n in wants.items() if n > 0}
        if not wants:
            return False
        got = ray.get(queue.take.remote(self.worker_id, wants))
        for p in got:
            self._add(p)
        return bool(got)

    def _serve(self, queue, offsets, served, spans, now) -> None:
        while True:
            if queue is not None and not self._refill(queue) and not any(e.has_unfinished()
                                                                          for e in self.engines.values()):
                queue = None  # dry, and nothing running: the queue only shrinks within a stage
            active = [(e, eng) for e, eng in self.engines.items() if eng.has_unfinished()]
            if not active:
                break
            for expert, engine in active:
                for seq in engine.step():
                    served.append(self._record(expert, seq, offsets[expert], engine))
                    spans[expert][2] = now()

    def _record(self, expert: str, seq, offset: float, engine) -> ServedRequest:
        text = engine.tokenizer.decode(seq.output_token_ids) if engine.tokenizer is not None else ""
        return ServedRequest(seq.request_id, expert, self.worker_id, seq.first_scheduled_s + offset,
                             seq.first_token_s + offset, seq.finish_s + offset, seq.num_prompt_tokens,
                             len(seq.output_token_ids), text, seq.num_preemptions)
