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
``realtime`` is False).
"""
from __future__ import annotations

import contextlib
import heapq
import math
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from tessera.kernels import dispatch
from tessera.kernels.layout import PAGE_SIZE, slot_mapping
from tessera.kvcache import HeadMode, make_policy
from tessera.kvcache.head_lists import shipped_unstable_heads
from tessera.results.schema import REQUEST_COLUMNS
from tessera.runtime.attention import DecodeLayerPlan, decode_attention, prefill_attention
from tessera.runtime.kv_cache import KVCache, SeqTables
from tessera.runtime.model import Transformer
from tessera.runtime.prompt_kv import PromptKVStore
from tessera.runtime.sampling import next_tokens
from tessera.runtime.sequence import FREE, SamplingParams, Sequence
from tessera.scheduling import FCFSScheduler, SchedulerConfig
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


class _SchedulerPool:
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


class Engine:
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
        self.pool = _SchedulerPool(self)
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

    # ---------------------------------------------------------------------------------------- forward
    def _forward(self, seqs: list[Sequence], nums: list[int], decoding: list[bool]):
        """Flattened batch through the model; returns (logits [S, vocab] of sampling rows, top-K per decode).

        Prefill chunks of prompts in the PromptKVStore are restored (stored K/V written, stored logits
        used) instead of computed; the chunks the model computes are recorded into the store.
        """
        model, cache = self.model, self.cache
        L, H = cache.num_layers, cache.num_kv_heads
        tokens, positions, rows, segments, sample_from = [], [], [], [], []
        restored = []  # (i, stored PromptKV, c, n)
        token_nums = list(nums)  # tokens each sequence puts through the model (0 when restored)
        start = 0
        for i, (s, n) in enumerate(zip(seqs, nums)):
            c = s.num_computed_tokens
            stored = self._stored_prefill(s, c, n, decoding[i])
            if stored is not None:
                restored.append((i, stored, c, n))
                token_nums[i] = 0
                self.num_restored_tokens += n
                if c + n == s.num_tokens:
                    sample_from.append(stored.logits)
                continue
            if c >= s.num_prompt_tokens:
                ids = s.output_token_ids[c - s.num_prompt_tokens:c - s.num_prompt_tokens + n]
            elif c + n > s.num_prompt_tokens:
                ids = s.token_ids[c:c + n]
            else:
                ids = s.prompt_token_ids[c:c + n]
            tokens.extend(ids)
            positions.extend(range(c, c + n))
            rows.extend([i] * n)
            if not decoding[i]:
                segments.append((i, start, n, c))
            if c + n == s.num_tokens:
                sample_from.append(start + n - 1)
            start += n
        P = max(-(-(s.num_computed_tokens + n) // PAGE_SIZE) for s, n in zip(seqs, nums))
        bt_np = np.full((len(seqs), L, H, P), -1, dtype=np.int32)
        for i, s in enumerate(seqs):
            w = min(P, s.tables.dev.shape[2])
            bt_np[i, :, :, :w] = s.tables.dev[:, :, :w]
        bt = self._upload(bt_np)
        tok_t = self._upload(tokens, np.int64)
        pos_t = self._upload(positions, np.int64)
        row_t = self._upload(rows, np.int64)
        # every layer's slots at once (one gather per step, not per layer): [L, N, H]
        slots_all = slot_mapping(bt.view(len(seqs), L * H, P), row_t, pos_t).view(-1, L, H).transpose(0, 1) \
            .contiguous() if tokens else None
        # CPU only (on CUDA a check would sync): numpy reads the host tensor in place, no transfer
        slots_valid = bool(tokens) and self.device.type == "cpu" and bool(slots_all.numpy().min() >= 0)
        # a batch of decodes only, one token per sequence in batch order: q, o and the tables need no gather
        only_decodes = all(decoding) and all(n == 1 for n in nums)
        full_dev, full_mm = self._newly_full(seqs, nums)
        dec = self._decode_inputs(seqs, token_nums, decoding, bt, P) if any(decoding) else None
        if restored:
            r_rows = self._upload(np.concatenate([np.full(n, i) for i, _, _, n in restored]), np.int64)
            r_pos = self._upload(np.concatenate([np.arange(c, c + n) for _, _, c, n in restored]), np.int64)
        recording = [] if self.prompt_kv is None else \
            [(seqs[i].prompt_token_ids, s0, T, c) for i, s0, T, c in segments if c + T <= seqs[i].num_prompt_tokens]
        rec_k = [[] for _ in recording]
        rec_v = [[] for _ in recording]

        h = model.embed(tok_t[None]) if tokens else None
        rope = model.rope(pos_t[None]) if tokens else None
        topk_dev: dict[int, torch.Tensor] = {}
        for l, layer in enumerate(model.layers):
            bt_l = bt[:, l]
            if restored:
                self._write_restored(l, restored, slot_mapping(bt_l, r_rows, r_pos))
            if h is None:
                if full_dev is not None:
                    cache.update_minmax(full_dev[l], full_mm[l])
                continue
            q, k, v = layer.qkv(h, rope)  # (1, Hq, N, D), (1, Hkv, N, D)
            cache.write(k[0].transpose(0, 1).contiguous(), v[0].transpose(0, 1).contiguous(), slots_all[l], slots_valid)
            for j, (_, s0, T, _) in enumerate(recording):
                rec_k[j].append(k[0, :, s0:s0 + T])
                rec_v[j].append(v[0, :, s0:s0 + T])
            if full_dev is not None:
                cache.update_minmax(full_dev[l], full_mm[l])
            o = torch.empty_like(q) if not only_decodes else None
            for i, s0, T, c in segments:
                blocks = bt_l[i, :, :-(-(c + T) // PAGE_SIZE)]
                o[:, :, s0:s0 + T] = prefill_attention(q[:, :, s0:s0 + T], k[:, :, s0:s0 + T], v[:, :, s0:s0 + T],
                                                       cache.kv, blocks, c, self.windows[l])
            if dec is not None:
                if only_decodes:
                    qd, btd = q[0].transpose(0, 1).contiguous(), bt_l  # [Bd, Hq, D]: a view of q
                else:
                    qd = q[0, :, dec["tok"]].transpose(0, 1).contiguous()
                    btd = bt_l[dec["rows"]].contiguous()
                plan = dec["plans"][l]
                topk = None
                if plan.needs_scores:
                    scores = dispatch.score_pages(qd, cache.minmax, dec["mm"][:, l], dec["lens"])
                    topk = dispatch.select_topk(scores, self.topk_pages)
                    if dec["due_layers"][l]:
                        topk_dev[l] = topk  # copied to the host once, after the last layer
                od = decode_attention(qd, cache.kv, btd, dec["lens"], plan, topk)
                if only_decodes:
                    o = od.transpose(0, 1)[None]
                else:
                    o[0, :, dec["tok"]] = od.transpose(0, 1)
            h = layer.finish(h, o)
        logits = self._sampling_logits(h, sample_from)
        if recording:
            self._record_prefills(recording, rec_k, rec_v, h, logits, sample_from)
        topk_np: dict[int, np.ndarray] = {}
        if topk_dev:  # one device->host copy for every due layer (same shape [Bd, Hkv, K])
            due = sorted(topk_dev)
            host = torch.stack([topk_dev[l] for l in due]).cpu().numpy()
            topk_np = {l: host[j] for j, l in enumerate(due)}
        topk_rows = self._due_topk(seqs, decoding, dec, topk_np) if dec is not None else {}
        return logits, topk_rows

    def _write_restored(self, layer: int, restored: list, slots: torch.Tensor) -> None:
        """Write the stored K/V of this step's restored prefill chunks (in batch order) into the pool."""
        k = torch.cat([p.k[layer][:, c:c + n] for _, p, c, n in restored], dim=1).transpose(0, 1)  # [N, Hkv, D]
        v = torch.cat([p.v[layer][:, c:c + n] for _, p, c, n in restored], dim=1).transpose(0, 1)
        dispatch.write_kv(self.cache.kv, k.contiguous(), v.contiguous(), slots)

    def _record_prefills(self, recording: list, rec_k: list, rec_v: list, h, logits, sample_from: list) -> None:
        """Hand the computed prompt chunks (per layer K/V) to the store, with the logits at a prompt's end."""
        logit_row = {src: j for j, src in enumerate(sample_from) if isinstance(src, int)}
        for j, (prompt, s0, T, c) in enumerate(recording):
            last, end = None, s0 + T - 1
            if c + T == len(prompt):
                last = logits[logit_row[end]] if end in logit_row else self.model.logits(h[:, end:end + 1])[0, 0]
            self.prompt_kv.record(prompt, c, rec_k[j], rec_v[j], last)

    def _stored_prefill(self, s: Sequence, c: int, n: int, decoding: bool):
        """The stored prefill of s when this step's chunk [c, c + n) lies inside its prompt, else None."""
        if self.prompt_kv is None or decoding or c + n > s.num_prompt_tokens:
            return None
        return self.prompt_kv.get(s.prompt_token_ids)

    def _sampling_logits(self, h, sample_from: list) -> torch.Tensor | None:
        """Logits [S, vocab] of the sampling rows: a row of h (int) or a stored prefill's logits (tensor)."""
        if not sample_from:
            return None
        at = [src for src in sample_from if isinstance(src, int)]
        computed = self.model.logits(h[:, self._upload(at, np.int64)])[0] if at else None
        if len(at) == len(sample_from):
            return computed
        rows, j = [], 0
        for src in sample_from:
            if isinstance(src, int):
                rows.append(computed[j])
                j += 1
            else:
                rows.append(src.to(self.device))
        return torch.stack(rows)

    def _newly_full(self, seqs, nums):
        """Device and MinMax block ids [L, X] of the pages every head fills this step (for update_minmax)."""
        if not self.cache.keeps_minmax:
            return None, None
        devs, mms = [], []
        for s, n in zip(seqs, nums):
            c = s.num_computed_tokens
            p0, p1 = c // PAGE_SIZE, (c + n) // PAGE_SIZE
            if p1 > p0:
                devs.append(s.tables.dev[:, :, p0:p1].reshape(self.cache.num_layers, -1))
                mms.append(s.tables.mm[:, :, p0:p1].reshape(self.cache.num_layers, -1))
        if not devs:
            return None, None
        dev_ids = np.concatenate(devs, axis=1)
        mm_ids = np.concatenate(mms, axis=1)
        assert (dev_ids >= 0).all() and (mm_ids >= 0).all(), "a page filled this step has no block"
        return self._upload(dev_ids), self._upload(mm_ids)

    def _decode_inputs(self, seqs, nums, decoding, bt, P) -> dict:
        """Per layer: which kernels run, static page lists and rows whose pages come from this step's scores."""
        L, H = self.cache.num_layers, self.cache.num_kv_heads
        mode, plan = self.mode, self.plan
        idx = [i for i, d in enumerate(decoding) if d]
        tok_index = np.cumsum([0] + nums)[:-1]
        dseqs = [seqs[i] for i in idx]
        Bd = len(dseqs)
        lens = np.array([s.num_computed_tokens + 1 for s in dseqs], dtype=np.int64)
        out = {"rows": self._upload(idx, np.int64),
               "tok": self._upload(tok_index[idx], np.int64),
               "lens": self._upload(lens, np.int32)}
        due_layers = np.zeros(L, dtype=bool)
        dynamic = np.zeros((Bd, L, H), dtype=bool)
        dynamic[:, mode == HeadMode.RESIDENT_TOPK] = True
        static = np.zeros((Bd, L, H, P), dtype=bool)
        pages = np.arange(P)
        off = mode == HeadMode.OFFLOAD
        win = mode == HeadMode.WINDOW
        for b, s in enumerate(dseqs):
            n = -(-int(lens[b]) // PAGE_SIZE)
            if win.any():
                keep = (pages < plan.sink_pages) | ((pages >= n - plan.window_pages) & (pages < n))
                static[b][win] = keep
            if off.any():
                if s.decoded_since_prefill:
                    static[b][off] = s.tables.dev[off][:, :P] >= 0 if s.tables.dev.shape[2] >= P else \
                        np.pad(s.tables.dev[off], ((0, 0), (0, P - s.tables.dev.shape[2])), constant_values=-1) >= 0
                else:
                    dynamic[b][off] = True  # first rank: this step's top-K is used at once
                layers, _ = s.rk.due_heads()
                due_layers[np.unique(layers)] = True
        width = int(static.sum(-1).max(initial=0))
        if width:
            order = np.where(static, pages, P)
            order.sort(axis=-1)
            order = order[..., :width]
            static_pages = np.where(order == P, -1, order).astype(np.int32)
        else:
            static_pages = np.full((Bd, L, H, 1), -1, dtype=np.int32)
        static_t = self._upload(static_pages)
        dynamic_t = self._upload(dynamic)
        if self.cache.keeps_minmax:
            mm_np = np.full((Bd, L, H, P), -1, dtype=np.int32)
            for b, s in enumerate(dseqs):
                w = min(P, s.tables.mm.shape[2])
                mm_np[b, :, :, :w] = s.tables.mm[:, :, :w]
            out["mm"] = self._upload(mm_np)
        plans = []
        for l in range(L):
            needs = bool(self._layer_has_resident_topk[l] or due_layers[l] or dynamic[:, l].any())
            needs = needs and self.cache.keeps_minmax
            all_full = self._all_full_layer[l]
            plans.append(DecodeLayerPlan(full_heads=self._full_heads[l],
                                         pages=None if all_full else static_t[:, l].contiguous(),
                                         dynamic=dynamic_t[:, l] if needs else None, needs_scores=needs,
                                         any_full=self._any_full[l], all_full=all_full,
                                         full_q=self._full_q[l], window=self.windows[l]))
        out["plans"] = plans
        out["due_layers"] = due_layers
        out["dseqs"] = dseqs
        return out

    def _due_topk(self, seqs, decoding, dec, topk_np) -> dict[int, np.ndarray]:
        """Per decoding sequence (batch index): top-K rows [m, K] for its due OFFLOAD heads, in due_heads order."""
        out = {}
        if not self.has_offload:
            return out
        b = 0
        for i, s in enumerate(seqs):
            if not decoding[i]:
                continue
            layers, heads = s.rk.due_heads()
            if len(layers):
                out[i] = np.stack([topk_np[int(l)][b, int(h)] for l, h in zip(layers, heads)])
            b += 1
        return out

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
