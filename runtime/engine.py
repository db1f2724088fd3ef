"""The runtime engine: iteration-level continuous batching of a Transformer over the paged KV cache.

One step = three calls (nano-vllm): the shared FCFSScheduler picks the batch (chunked prefill, token
budget, max_num_seqs, preemption by recompute), ``_forward`` runs prefill chunks and decodes of many
requests as ONE flattened token batch through the model (linear layers once; attention per segment for
prefill, batched paged kernels for decode), and ``_postprocess`` advances counters, drives each
request's RequestKV (the shared KV policy, in the simulator's call order), executes the page moves it
reports, samples and finishes requests. A request may force some or all of its output tokens
(SamplingParams.forced_token_ids) and record their log-probs: teacher-forced scoring under a KV policy.
Engines of one model may share a PromptKVStore (runtime/prompt_kv.py): prefills it holds are restored
instead of computed (prefill is dense under every policy), so many policies can decode the same prompts.

KV policy per (layer, KV head) (tessera/kvcache): FULL heads attend every page; RESIDENT_TOPK heads
attend the top-K of this step's MinMax scores (score_pages + select_topk); OFFLOAD heads attend their
resident top-K + tail, and at their first rank after a (re)prefill this step's top-K (RequestKV's rule);
WINDOW heads attend sinks + window. New top-K sets of due OFFLOAD heads come from the same scores and
are handed to RequestKV.on_decode_step; the moves it returns (d2h, h2d, free, drop) are executed at once.
Reloads land before the next forward (a stream wait on CUDA, synchronous on CPU), so on_reload_done is
called right after the copy is queued and a request never stalls a step (a deviation from the authors'
asynchronous reload, documented).

Times are engine-clock seconds (time.perf_counter since construction, plus idle time skipped when
``realtime`` is False). The forward pass is runtime/engine_forward.py (a mixin); EngineConfig, the device, the
policy by name and the scheduler's view of the pool are runtime/engine_setup.py (re-exported here).
"""
from __future__ import annotations

import contextlib
import heapq
import math
import time
from collections import deque
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from tessera.kernels.layout import PAGE_SIZE
from tessera.kvcache import HeadMode
from tessera.results.schema import REQUEST_COLUMNS
from tessera.runtime.engine_forward import EngineForward
from tessera.runtime.engine_setup import (GIB, EngineConfig, SchedulerPool, build_policy, model_spec,  # noqa: F401
                                         resolve_device)
from tessera.runtime.kv_cache import KVCache, SeqTables
from tessera.runtime.model import Transformer
from tessera.runtime.prompt_kv import PromptKVStore
from tessera.runtime.sampling import next_tokens
from tessera.runtime.sequence import FREE, SamplingParams, Sequence
from tessera.scheduling import FCFSScheduler


class Engine(EngineForward):
    """Continuous-batching engine. API: add_request, step, run, generate, records, kv_usage."""

    def __init__(self, model: Transformer, tokenizer=None, config: EngineConfig | None = None, policy=None,
                 name: str = "model", prompt_kv: PromptKVStore | None = None, eos_ids: set[int] | None = None) -> None:
        self.model = model.eval()
        self.prompt_kv = prompt_kv  # prefills shared with other engines of this model (runtime/prompt_kv.py)
        if prompt_kv is not None:
            prompt_kv.bind(model)
        self.tokenizer = tokenizer
        self.config = config = config or EngineConfig()
        self.name = name
        self.device = model.model.embed_tokens.weight.device
        self.dtype = model.model.embed_tokens.weight.dtype
        self.spec = model_spec(model, name)
        self.policy = policy or build_policy(config.kvpolicy, self.spec, config.kvpolicy_params, config.seed)
        plan = self.plan = self.policy.plan
        self.windows = [model.config.layer_window(l) for l in range(model.config.num_hidden_layers)]
        if any(w is not None for w in self.windows) and not (np.asarray(plan.mode) == HeadMode.FULL).all():
            raise ValueError(f"kvpolicy={config.kvpolicy!r}: {name} attends through a sliding window of "
                             f"{model.config.sliding_window} tokens, which only kvpolicy=full supports")
        if plan.geometry.page_tokens != PAGE_SIZE:
            raise ValueError(f"kvpolicy page_tokens={plan.geometry.page_tokens}: the kernels use {PAGE_SIZE}")
        self.mode = np.asarray(plan.mode)
        self.topk_pages = plan.topk_pages
        self.has_offload = plan.count(HeadMode.OFFLOAD) > 0
        self.num_offload_heads = plan.count(HeadMode.OFFLOAD)
        c = model.config
        if c.head_dim < 16 or c.head_dim & (c.head_dim - 1):
            raise ValueError(f"{name}: head_dim={c.head_dim}; the paged-KV kernels need a power of two >= 16 "
                             "(the model itself runs through Transformer.forward)")
        page_bytes = 2 * PAGE_SIZE * c.head_dim * self.spec.dtype_bytes
        n_dev = config.num_device_blocks or int(config.device_kv_gib * GIB // page_bytes)
        n_host = int(config.host_kv_gib * GIB // page_bytes) if self.has_offload else 0
        n_mm = n_dev + n_host if plan.keeps_minmax else 0
        self.cache = KVCache(c.num_hidden_layers, c.num_key_value_heads, c.head_dim, n_dev, n_host, n_mm,
                             self.dtype, self.device)
        self.pool = SchedulerPool(self)
        self.scheduler = FCFSScheduler(config.scheduler_config())
        self.eos_ids = set(eos_ids) if eos_ids is not None else self._eos_ids()
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self._arrivals: list[tuple[float, int, Sequence]] = []  # heap (arrival_s, request_id, seq)
        self.sequences: dict[int, Sequence] = {}
        self._next_id = 0
        self._host_reserved = 0
        self._mm_reserved = 0
        self.num_steps = 0
        self.peak_host_blocks = 0
        self.num_preemptions = 0
        self.decode_tokens = 0
        self.decode_time_s = 0.0
        self.num_restored_tokens = 0  # prefill tokens restored from prompt_kv instead of computed
        self._last_step_tokens = 0
        self._usage: list[tuple[float, int]] = []
        self._t0 = time.perf_counter()
        self._skipped = 0.0
        # per-layer head classes, fixed for the run
        L = c.num_hidden_layers
        full = self.mode == HeadMode.FULL  # numpy [L, Hkv]: host-side, so no per-layer device sync
        group = c.num_attention_heads // c.num_key_value_heads
        self._full_heads = [torch.as_tensor(full[l], device=self.device) for l in range(L)]
        self._full_q = [torch.as_tensor(np.repeat(full[l], group), device=self.device) for l in range(L)]
        self._any_full = [bool(full[l].any()) for l in range(L)]
        self._all_full_layer = [bool(full[l].all()) for l in range(L)]
        self._layer_has_resident_topk = [(self.mode[l] == HeadMode.RESIDENT_TOPK).any() for l in range(L)]
        self._all_full = bool((self.mode == HeadMode.FULL).all())

    @classmethod
    def from_checkpoint(cls, folder: str | Path, config: EngineConfig | None = None, device: str = "auto",
                        dtype: torch.dtype | str | None = None) -> "Engine":
        from tessera.runtime.checkpoint import DTYPES, load_checkpoint
        from tessera.runtime.tokenizer import generation_eos_ids, load_tokenizer

        folder = Path(folder)
        device = resolve_device(device)
        dtype = DTYPES[dtype] if isinstance(dtype, str) else dtype
        model = load_checkpoint(folder, device=device, dtype=dtype)
        try:
            tokenizer = load_tokenizer(folder)
        except FileNotFoundError:
            tokenizer = None
        eos = generation_eos_ids(folder)
        if not eos and tokenizer is not None and tokenizer.eos_id >= 0:
            eos = {tokenizer.eos_id}
        return cls(model, tokenizer, config, name=folder.name, eos_ids=eos)

    # ------------------------------------------------------------------------------------------ clock
    def now(self) -> float:
        return time.perf_counter() - self._t0 + self._skipped

    # ------------------------------------------------------------------------------------- requests
    def add_request(self, prompt: str | list[int], params: SamplingParams | None = None, arrival_s: float | None = None,
                    request_id: int | None = None) -> int:
        """Queue a request (text needs a tokenizer); it is not admitted before arrival_s on the engine clock."""
        params = params or SamplingParams()
        if isinstance(prompt, str):
            if self.tokenizer is None:
                raise ValueError("a text prompt needs a tokenizer; pass token ids")
            prompt = self.tokenizer.encode(prompt)  # with the specials the checkpoint's tokenizer adds (BOS)
        self._check_request(prompt, params)
        request_id = self._next_id if request_id is None else request_id
        if not isinstance(request_id, (int, np.integer)) or request_id < 0:
            raise ValueError(f"request id {request_id!r} is invalid: use an integer >= 0")
        if arrival_s is not None and not math.isfinite(float(arrival_s)):
            raise ValueError(f"arrival_s={arrival_s!r} is invalid: use finite seconds on the engine clock")
        if request_id in self.sequences:
            raise ValueError(f"request id {request_id} is already used")
        self._next_id = max(self._next_id, request_id + 1)
        seed = params.seed if params.seed is not None else self.config.seed * 1_000_003 + request_id
        gen = torch.Generator().manual_seed(seed)
        arrival = self.now() if arrival_s is None else float(arrival_s)
        tables = SeqTables(self.cache.num_layers, self.cache.num_kv_heads, -(-len(prompt) // PAGE_SIZE) + 1)
        seq = Sequence(request_id, list(prompt), params, arrival, tables, gen)
        self._check_fits(seq)
        seq.rk = self.policy.new_request(request_id, seq.num_prompt_tokens, track_pages=True)
        self.sequences[request_id] = seq
        heapq.heappush(self._arrivals, (arrival, request_id, seq))
        return request_id

    def _check_request(self, prompt: list[int], params: SamplingParams) -> None:
        """Refuse what the model cannot compute: no tokens, ids outside the vocabulary, more positions than
        the model was built for (max_position_embeddings)."""
        c = self.model.config
        if len(prompt) == 0:
            raise ValueError("prompt is empty: a request needs at least one token")
        bad = [t for t in prompt if not isinstance(t, (int, np.integer)) or not 0 <= t < c.vocab_size]
        if bad:
            raise ValueError(f"prompt token id(s) {bad[:5]} are outside the vocabulary [0, {c.vocab_size})")
        if any(t >= c.vocab_size for t in params.forced_token_ids):
            raise ValueError(f"forced_token_ids has an id >= the vocabulary size {c.vocab_size}")
        s = self.config
        if not s.chunked_prefill and len(prompt) + params.max_tokens - 1 > s.max_num_batched_tokens:
            # a recompute after preemption prefills prompt + outputs in one step, which must fit the budget
            raise ValueError(f"prompt ({len(prompt)} tokens) + max_tokens ({params.max_tokens}) - 1 exceed "
                             f"max_num_batched_tokens={s.max_num_batched_tokens} with chunked_prefill=False: "
                             "raise max_num_batched_tokens or enable chunked_prefill")
        if len(prompt) + params.max_tokens > c.max_position_embeddings:
            raise ValueError(f"prompt ({len(prompt)} tokens) + max_tokens ({params.max_tokens}) exceed the model's "
                             f"context length max_position_embeddings={c.max_position_embeddings}: shorten the "
                             "prompt or lower max_tokens")

    def has_unfinished(self) -> bool:
        return bool(self.waiting or self.running or self._arrivals)

    def _check_fits(self, seq: Sequence) -> None:
        total = seq.num_prompt_tokens + seq.params.max_tokens
        heads = self.cache.num_heads_total
        sparse = bool(np.isin(self.mode, (HeadMode.WINDOW, HeadMode.OFFLOAD)).any())
        device = heads * -(-(seq.num_prompt_tokens + 1 if sparse else total) // PAGE_SIZE)
        host, mm = self._peak_needs(seq)
        for what, need, have, key in (("device KV head-pages", device, self.cache.device_blocks.num_blocks,
                                       "runtime.device_kv_gib / runtime.num_device_blocks"),
                                      ("host KV head-pages", host, self.cache.host_blocks.num_blocks,
                                       "runtime.host_kv_gib"),
                                      ("MinMax blocks", mm, self.cache.minmax_blocks.num_blocks,
                                       "runtime.device_kv_gib")):
            if need > have:
                raise MemoryError(f"request {seq.request_id} ({seq.num_prompt_tokens} prompt + "
                                  f"{seq.params.max_tokens} output tokens) needs {need} {what}, the pool has "
                                  f"{have}: raise {key}")

    def _peak_needs(self, seq: Sequence) -> tuple[int, int]:
        total = seq.num_prompt_tokens + seq.params.max_tokens
        host = self.num_offload_heads * (total // PAGE_SIZE)
        mm = self.cache.num_heads_total * -(-total // PAGE_SIZE) if self.cache.keeps_minmax else 0
        return host, mm

    def _reserve(self, seq: Sequence) -> bool:
        host, mm = self._peak_needs(seq)
        if self._host_reserved + host > self.cache.host_blocks.num_blocks:
            return False
        if self._mm_reserved + mm > self.cache.minmax_blocks.num_blocks:
            return False
        self._host_reserved += host
        self._mm_reserved += mm
        seq._reserved = (host, mm)
        return True

    def _unreserve(self, seq: Sequence) -> None:
        host, mm = getattr(seq, "_reserved", (0, 0))
        self._host_reserved -= host
        self._mm_reserved -= mm
        seq._reserved = (0, 0)

    def _release(self, seq: Sequence) -> None:
        """All of a request's blocks go back: it finished, or the scheduler preempts it (recompute)."""
        self.cache.release(seq.tables)
        if seq.status == "finished":
            seq.rk.on_finish()
        else:
            seq.rk.on_preempt()
            self.num_preemptions += 1
        self._unreserve(seq)

    # ------------------------------------------------------------------------------------------- loop
    def _admit_arrivals(self) -> None:
        if not (self.waiting or self.running) and self._arrivals:
            gap = self._arrivals[0][0] - self.now()
            if gap > 0:
                if self.config.realtime:
                    time.sleep(gap)
                else:
                    self._skipped += gap
        now = self.now()
        while self._arrivals and self._arrivals[0][0] <= now:
            _, _, seq = heapq.heappop(self._arrivals)
            self.waiting.append(seq)

    def step(self) -> list[Sequence]:
        """One iteration; returns the requests that finished in it."""
        self._admit_arrivals()
        self.cache.poll()
        batch = self.scheduler.schedule(self.waiting, self.running, self.pool)
        if not batch.seqs:
            if self.waiting and not self.running and not self.cache.num_pending_blocks:
                seq = self.waiting[0]
                raise MemoryError(f"request {seq.request_id} cannot be scheduled: it needs "
                                  f"{self.pool.blocks_needed(seq, seq.num_tokens)} head-pages, "
                                  f"{self.pool.num_free_blocks} free; raise runtime.device_kv_gib")
            return []
        t = self.now()
        for seq in batch.seqs:
            if math.isnan(seq.first_scheduled_s):
                seq.first_scheduled_s = t
            seq.status = "running"
        nums = list(batch.num_scheduled_tokens)
        self._last_step_tokens = sum(nums)
        decoding = [s.rk.phase == "decoding" for s in batch.seqs]
        t_fwd = time.perf_counter()
        with self._device_context(), torch.inference_mode():
            logits, topk_rows = self._forward(batch.seqs, nums, decoding)
            # One device->host copy for the whole batch; on CUDA it also ends the step's async work, so
            # the decode time below and the token times in _postprocess are measured, not launch times.
            samplers = [s for s, n in zip(batch.seqs, nums) if s.num_computed_tokens + n == s.num_tokens]
            tokens, logprobs = next_tokens(logits, [s.params for s in samplers], [s.generator for s in samplers],
                                           [len(s.output_token_ids) for s in samplers]) \
                if logits is not None else ([], [])
        if all(decoding):
            self.decode_tokens += len(nums)
            self.decode_time_s += time.perf_counter() - t_fwd
        with self._device_context():
            finished = self._postprocess(batch.seqs, nums, decoding, tokens, logprobs, topk_rows)
        self.num_steps += 1
        self._usage.append((self.now(), self.cache.device_blocks.num_used))
        self.peak_host_blocks = max(self.peak_host_blocks, self.cache.host_blocks.num_used)
        return finished

    def _device_context(self):
        """Triton launches on the CURRENT CUDA device's current stream: make it the model's device."""
        return torch.cuda.device(self.device) if self.device.type == "cuda" else contextlib.nullcontext()

    def _upload(self, array: np.ndarray | list, dtype=None) -> torch.Tensor:
        """A small host array as a tensor on the engine's device: pinned + non_blocking on CUDA (no
        pageable copy that blocks the host), shared memory on CPU."""
        t = torch.from_numpy(np.ascontiguousarray(array if dtype is None else np.asarray(array, dtype=dtype)))
        if self.device.type != "cuda":
            return t.to(self.device)  # no-op on CPU
        return t.pin_memory().to(self.device, non_blocking=True)

    def run(self, progress: bool = False) -> list[Sequence]:
        """Step until every queued request finished; returns them in request-id order.

        progress: a bar over every token the requests put through the model (prompt + output), so long
        prefills move it too, with the requests finished so far beside it."""
        bar = None
        if progress:
            from tqdm import tqdm
            pending = [s for _, _, s in self._arrivals] + list(self.waiting) + list(self.running)
            total = sum(s.num_prompt_tokens + s.params.max_tokens - s.num_computed_tokens for s in pending)
            bar = tqdm(total=total, desc="runtime", unit="tok", unit_scale=True)
        done = 0
        while self.has_unfinished():
            before = self.num_steps
            finished = self.step()
            if bar is not None and self.num_steps > before:
                done += len(finished)
                bar.update(min(self._last_step_tokens, bar.total - bar.n))
                bar.set_postfix_str(f"{done} requests done", refresh=False)
        if bar is not None:
            bar.update(bar.total - bar.n)  # the last sampled tokens never go through the model
            bar.close()
        return [self.sequences[i] for i in sorted(self.sequences)]

    def generate(self, prompts: list[str | list[int]], params: SamplingParams | None = None) -> list[list[int]]:
        """Run prompts to completion (arriving now); returns their generated token ids in order."""
        ids = [self.add_request(p, params) for p in prompts]
        self.run()
        return [self.sequences[i].output_token_ids for i in ids]

    # ------------------------------------------------------------------------------------ postprocess
    def _postprocess(self, seqs, nums, decoding, tokens, logprobs, topk_rows) -> list[Sequence]:
        """tokens (and their log-probs, None unless asked for): this step's next ids, one per sequence that
        samples, in batch order."""
        finished = []
        row = 0
        for i, (s, n) in enumerate(zip(seqs, nums)):
            s.num_computed_tokens += n
            summary = None
            if decoding[i]:
                summary = s.rk.on_decode_step(topk=topk_rows.get(i))
                s.decoded_since_prefill = True
            elif s.num_computed_tokens == s.num_tokens:
                summary = s.rk.on_prefill_done(s.num_computed_tokens)
            samples = s.num_computed_tokens == s.num_tokens
            if samples:
                token, logprob = tokens[row], logprobs[row]
                forced = s.params.forced_at(len(s.output_token_ids)) != FREE
                row += 1
                s.output_token_ids.append(token)
                if logprob is not None:
                    s.output_logprobs.append(logprob)
                t = self.now()
                if math.isnan(s.first_token_s):
                    s.first_token_s = t
                reason = self._stop_reason(s, token, forced)
                if reason is not None:
                    s.finish_reason = reason
                    s.status = "finished"
                    s.finish_s = t
                    self.running.remove(s)
                    self.pool.free(s)  # this step's moves are moot: everything goes back
                    finished.append(s)
                    continue
            if summary is not None:
                if summary.moves is not None:
                    stats = self.cache.apply_moves(s.tables, summary.moves)
                    s.bytes_moved += stats.bytes
                    s.d2h_bytes += stats.d2h_pages * self.cache.page_bytes
                    s.h2d_bytes += stats.h2d_pages * self.cache.page_bytes
                    s.num_reloads += stats.h2d_pages > 0
                if summary.is_reloading:
                    s.rk.on_reload_done()
                if self.config.check_invariants and s.tables.num_device_blocks != s.rk.device_pages:
                    raise AssertionError(f"request {s.request_id}: holds {s.tables.num_device_blocks} device blocks, "
                                         f"its KV policy counts {s.rk.device_pages}")
        return finished

    def _stop_reason(self, s: Sequence, token: int, forced: bool = False) -> str | None:
        if not forced and token in s.params.stop_token_ids:
            return "stop"
        if not forced and not s.params.ignore_eos and token in self.eos_ids:
            return "eos"
        if len(s.output_token_ids) >= s.params.max_tokens:
            return "length"
        return None

    def _eos_ids(self) -> set[int]:
        ids = set()
        eos = self.model.config.eos_token_id
        if isinstance(eos, int):
            ids.add(eos)
        elif isinstance(eos, list):
            ids.update(eos)
        tok_eos = getattr(self.tokenizer, "eos_id", None)
        if isinstance(tok_eos, int) and tok_eos >= 0:
            ids.add(tok_eos)
        return ids

    # ---------------------------------------------------------------------------------------- results
    def records(self) -> pd.DataFrame:
        """One row per request in the shared results schema (tessera.results), engine-clock seconds."""
        seqs = [self.sequences[i] for i in sorted(self.sequences)]
        decode = self.tokenizer.decode if self.tokenizer is not None else None
        frame = pd.DataFrame({
            "request_id": [s.request_id for s in seqs],
            "query_id": [None] * len(seqs),
            "stage": [None] * len(seqs),
            "model": [self.name] * len(seqs),
            "worker": [0] * len(seqs),
            "arrival_s": [s.arrival_s for s in seqs],
            "start_s": [s.first_scheduled_s for s in seqs],
            "first_token_s": [s.first_token_s for s in seqs],
            "finish_s": [s.finish_s for s in seqs],
            "prompt_tokens": [s.num_prompt_tokens for s in seqs],
            "output_tokens": [len(s.output_token_ids) for s in seqs],
            "preemptions": [s.num_preemptions for s in seqs],
            "bytes_moved": [float(s.bytes_moved) for s in seqs],
            "answer": [decode(s.output_token_ids) if decode else None for s in seqs],
            "correct": [None] * len(seqs),
            "status": [s.status for s in seqs],
        })
        return frame.astype(REQUEST_COLUMNS)

    def kv_usage(self) -> pd.DataFrame:
        t = np.array([u[0] for u in self._usage], dtype=float)
        used = np.array([u[1] for u in self._usage], dtype=np.int64)
        return pd.DataFrame({"worker": np.zeros(len(t), dtype=np.int64), "t_s": t, "used_blocks": used,
                             "num_blocks": np.full(len(t), self.cache.device_blocks.num_blocks, dtype=np.int64)})

    def stats(self) -> dict:
        return {"policy": self.plan.policy, "device_blocks": self.cache.device_blocks.num_blocks,
                "host_blocks": self.cache.host_blocks.num_blocks, "steps": self.num_steps,
                "preemptions": self.num_preemptions,
                "decode_tokens_per_s": self.decode_tokens / self.decode_time_s if self.decode_time_s else math.nan,
                "bytes_moved": float(sum(s.bytes_moved for s in self.sequences.values())),
                "pcie_d2h_bytes": float(sum(s.d2h_bytes for s in self.sequences.values())),
                "pcie_h2d_bytes": float(sum(s.h2d_bytes for s in self.sequences.values())),
                "num_reloads": int(sum(s.num_reloads for s in self.sequences.values()))}

    def kv_requests(self) -> pd.DataFrame:
        """Per request: KV bytes copied each way and reloads (the sim's kv_requests.csv columns that apply)."""
        seqs = [self.sequences[i] for i in sorted(self.sequences)]
        return pd.DataFrame({"request_id": [s.request_id for s in seqs], "h2d_bytes": [s.h2d_bytes for s in seqs],
                             "d2h_bytes": [s.d2h_bytes for s in seqs], "stall_s": [0.0] * len(seqs),
                             "num_reloads": [s.num_reloads for s in seqs]})
