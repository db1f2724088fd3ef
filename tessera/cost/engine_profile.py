"""Engine profiles: the fixed costs a real serving engine pays besides the roofline, with each number's source.

A profile (conf/engine_profile/*.yaml) gives per-iteration CPU time, kernel-launch cost in eager mode, the
CUDA-graph decode path, all-reduce latency floors and the attention backend; EngineCostModel applies it.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields

# Achieved fraction of the GPU's dense BF16 peak for prefill attention, by backend and GPU generation, and of
# HBM bandwidth for decode attention. Sources:
# - flash_attn (FlashAttention-2) on Ampere: FA2 paper abstract, "reaching 50-73% of the theoretical maximum
#   FLOPs/s on A100" (forward) -> 0.62, the middle; on Hopper: FA3 paper (Shah et al. 2024) §1, "FlashAttention-2
#   achieves only 35% utilization on H100" -> 0.35.
# - flash_attn3 (FlashAttention-3, Hopper only): FA3 paper abstract, "up to 740 TFLOPs/s (75% utilization)" -> 0.75.
# - flashinfer / triton: no public utilisation figure found; prefill set equal to FA2 on the same GPU (both are
#   FA2-style tiled kernels); flagged in docs/fidelity.md.
# Decode attention streams the KV cache; no backend publishes a bandwidth fraction we could cite, so every
# backend keeps the roofline's hbm_fraction (Vidur's profiled 0.77-0.89 for linear layers, cost/roofline.py).
ATTENTION_BACKENDS: dict[str, dict[str, float | None]] = {
    "roofline": {"ampere": None, "hopper": None},  # the cost model's own flops_fraction (tessera_default)
    "flash_attn": {"ampere": 0.62, "hopper": 0.35},
    "flash_attn3": {"ampere": None, "hopper": 0.75},
    "flashinfer": {"ampere": 0.62, "hopper": 0.35},
    "triton": {"ampere": 0.62, "hopper": 0.35},
}
HOPPER = ("H100", "H200")
GRAPH_FIELDS = ("graph_sizes", "graph_mixed", "graph_max_context")  # read only with cuda_graphs on


@dataclass(frozen=True, slots=True)
class EngineProfile:
    """The fixed costs of one engine generation. All times in seconds; every field is documented in
    conf/engine_profile/<name>.yaml with its source.

    cpu_fixed_s, cpu_per_seq_s, cpu_per_token_s: CPU time of one iteration (scheduling, input preparation,
        sampling, output processing) = fixed + per sequence in the batch + per scheduled token.
    control_per_token_s: per TP worker (TP > 1) and per token of every sequence in the step (its prompt, and for
        a decoding sequence its whole context): the driver shipping the step's sequence metadata to each worker
        (vLLM before PR #2221: one Ray call per worker with the pickled token lists). CPU time of the step. Counted
        from the step's BatchShape: a chunked prefill counts its chunk, a decoding sequence the KV tokens it reads
        (its context under full KV; refused with a KV policy), pipeline stages their own TP workers.
    cpu_overlapped: the CPU work of step i+1 runs while the GPU runs step i (SGLang's overlap scheduler):
        an iteration then takes max(GPU, CPU) instead of their sum.
    launch_per_layer_s: kernel-launch gaps per decoder layer when a step runs eagerly (GPU idle between kernels,
        added to the kernel time).
    host_launch_per_layer_s: the host's time to issue one decoder layer's kernels when a step runs eagerly
        (Python module code and launches). Launches are asynchronous, so the host hides behind the GPU until it
        is the slower side: an eager step's GPU time is max(kernel time, layers x this). This is the per-step
        floor that does not fall with TP (every rank launches every layer's kernels).
    cuda_graphs: decode steps replay captured graphs: no launch gaps, the batch padded up to the next size in
        graph_sizes (larger batches run eagerly); graph_mixed: prefill/mixed steps of at most max(graph_sizes)
        tokens are graphed too (vLLM v1's piecewise graphs), else they run eagerly.
    graph_max_context: a decode step replays a graph only while its longest sequence has at most this many tokens
        (vLLM v0's max_seq_len_to_capture, formerly max_context_len_to_capture); longer-context steps run eagerly.
        None: no limit (vLLM v1 and SGLang keep attention outside the graph). Read from BatchShape's
        decode_max_context (a shape that leaves it 0 is not checked).
    allreduce_floor_s: the least time of one TP all-reduce call (two per layer), whatever its size.
    attention_backend: a key of ATTENTION_BACKENDS (prefill attention efficiency).
    hbm_fraction: the engine's achieved fraction of the HBM bandwidth (weight, KV and activation reads) in place
        of the cost model's own (None: backend.cost.params / RooflineEfficiency's 0.8). Engines differ here by
        their GEMM and attention kernels; a fit over two GPU generations can tell it from a fixed cost.
    frontend_s: what a client sees besides the engine's steps (HTTP, tokenisation, the first output chunk's
        delivery), charged as a delay before the engine sees each request (tessera/workload/frontend.py):
        TTFT and E2E grow by it, TPOT does not. Not an iteration cost: the cost model never reads it.
    frontend_serial: the frontend serves one request at a time (vLLM's API server: one event loop tokenises and
        hands requests to the engine), so requests sent together reach the engine frontend_s apart.
    """

    name: str
    cpu_fixed_s: float = 1e-3
    cpu_per_seq_s: float = 0.0
    cpu_per_token_s: float = 0.0
    control_per_token_s: float = 0.0
    cpu_overlapped: bool = False
    launch_per_layer_s: float = 0.0
    host_launch_per_layer_s: float = 0.0
    cuda_graphs: bool = False
    graph_mixed: bool = False
    graph_sizes: tuple[int, ...] = ()
    graph_max_context: int | None = None
    allreduce_floor_s: float = 0.0
    attention_backend: str = "roofline"
    hbm_fraction: float | None = None
    frontend_s: float = 0.0
    frontend_serial: bool = False

    def __post_init__(self) -> None:
        for f in ("cpu_fixed_s", "cpu_per_seq_s", "cpu_per_token_s", "control_per_token_s", "launch_per_layer_s",
                  "host_launch_per_layer_s", "allreduce_floor_s", "frontend_s"):
            value = getattr(self, f)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
                    or not 0.0 <= value < 1.0:
                raise ValueError(f"engine_profile.{f}={value!r} is invalid: use seconds in [0, 1)")
        h = self.hbm_fraction
        if h is not None and (isinstance(h, bool) or not isinstance(h, numbers.Real) or not 0.0 < h <= 1.0):
            raise ValueError(f"engine_profile.hbm_fraction={h!r} is invalid: use null (the cost model's) or a "
                             "fraction of the datasheet bandwidth in (0, 1]")
        for f in ("cpu_overlapped", "cuda_graphs", "graph_mixed", "frontend_serial"):
            if not isinstance(getattr(self, f), bool):
                raise ValueError(f"engine_profile.{f}={getattr(self, f)!r} is invalid: use true or false")
        if self.attention_backend not in ATTENTION_BACKENDS:
            raise ValueError(f"engine_profile.attention_backend={self.attention_backend!r} is invalid: use one of "
                             f"{', '.join(ATTENTION_BACKENDS)}")
        sizes = self.graph_sizes
        if self.cuda_graphs and (not sizes or expand_sizes(sizes) != list(sizes)):  # expand_sizes names a bad size
            raise ValueError(f"engine_profile.graph_sizes={list(sizes)!r} is invalid with cuda_graphs=true: use "
                             "increasing whole batch sizes >= 1, e.g. [1, 2, 4, 8, 16]")
        limit = self.graph_max_context
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, numbers.Integral) or limit < 1):
            raise ValueError(f"engine_profile.graph_max_context={limit!r} is invalid: use a whole number of tokens "
                             ">= 1 (vLLM v0: 8192) or null for no limit")
        for f, unused in (("graph_sizes", bool(sizes)), ("graph_mixed", self.graph_mixed)):
            if unused and not self.cuda_graphs:
                shown = (list(sizes[:6]) + (["..."] if len(sizes) > 6 else [])) if f == "graph_sizes" else self.graph_mixed
                raise ValueError(f"engine_profile.{f}={shown!r} has no effect with cuda_graphs=false: drop "
                                 "it or turn cuda_graphs on")
        if limit is not None and not self.cuda_graphs:
            raise ValueError(f"engine_profile.graph_max_context={limit} has no effect with cuda_graphs=false: drop it "
                             "(set it to null) or turn cuda_graphs on")
        if self.frontend_serial and self.frontend_s == 0.0:
            raise ValueError("engine_profile.frontend_serial=true has no effect with frontend_s=0: set "
                             "engine_profile.frontend_s (seconds per request) or drop frontend_serial")

    @classmethod
    def from_dict(cls, conf: dict) -> "EngineProfile":
        """A profile from its config mapping (conf/engine_profile/<name>.yaml); unknown keys are refused."""
        conf = dict(conf)
        allowed = {f.name for f in fields(cls)}
        unknown = sorted(set(conf) - allowed)
        if unknown:
            raise ValueError(f"engine_profile.{unknown[0]} is not a profile field "
                             f"(fields: {', '.join(sorted(allowed))})")
        if "name" not in conf:
            raise ValueError("engine_profile.name is missing: pick a profile with engine_profile=<name>")
        if conf.get("cuda_graphs", False) is False:  # a profile's graph settings are not read with graphs off
            for f in GRAPH_FIELDS:
                conf.pop(f, None)
        if "graph_sizes" in conf:
            conf["graph_sizes"] = tuple(expand_sizes(conf["graph_sizes"]))
        return cls(**conf)

    def prefill_flops_fraction(self, gpu_name: str) -> float | None:
        """The attention backend's prefill FLOP/s fraction on this GPU (None: the cost model's own)."""
        table = ATTENTION_BACKENDS[self.attention_backend]
        generation = "hopper" if any(h in gpu_name for h in HOPPER) else "ampere"
        value = table.get(generation)
        if value is None and self.attention_backend != "roofline":
            raise ValueError(f"engine_profile.attention_backend={self.attention_backend} has no {generation} "
                             f"kernel ({gpu_name}); pick flash_attn, flashinfer or triton")
        return value

    @property
    def is_neutral(self) -> bool:
        """True when every cost field (all but the frontend's) is at its default (tessera_default): the cost model
        runs unwrapped, with its own overhead_s (1 ms, the same as cpu_fixed_s here), so results are those of the
        plain simulator."""
        neutral = EngineProfile(name=self.name)
        return all(getattr(self, f.name) == getattr(neutral, f.name) for f in fields(self)
                   if f.name not in ("frontend_s", "frontend_serial"))


MAX_GRAPH_SIZE = 16_384  # batch sizes captured as graphs; engines capture up to a few hundred (vLLM v1: 512)
SIZES_FIX = "use a list of whole batch sizes and {start, stop, step} ranges, e.g. [1, 2, 4, {start: 8, stop: 256, " \
            "step: 8}]"


def _whole(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"engine_profile.graph_sizes: {what}={value!r} is not a whole number; {SIZES_FIX}")
    return int(value)


def expand_sizes(spec) -> list[int]:
    """Graph sizes from a list whose entries are whole sizes or {start, stop, step} ranges (stop inclusive), each in
    [1, MAX_GRAPH_SIZE], returned sorted without repeats; anything else is refused naming engine_profile.graph_sizes."""
    if isinstance(spec, (str, bytes, dict)) or not hasattr(spec, "__iter__"):
        raise ValueError(f"engine_profile.graph_sizes={spec!r} is not a list; {SIZES_FIX}")
    sizes: list[int] = []
    for item in spec:
        if hasattr(item, "keys"):
            keys = set(item.keys())
            if keys != {"start", "stop", "step"}:
                raise ValueError(f"engine_profile.graph_sizes: a range has keys {sorted(keys)}, it needs exactly "
                                 f"start, stop and step; {SIZES_FIX}")
            start, stop, step = (_whole(item[k], k) for k in ("start", "stop", "step"))
            if step < 1 or start < 1 or stop < start or stop > MAX_GRAPH_SIZE:
                raise ValueError(f"engine_profile.graph_sizes: the range {{start: {start}, stop: {stop}, step: {step}}}"
                                 f" is invalid: use 1 <= start <= stop <= {MAX_GRAPH_SIZE} and step >= 1")
            sizes.extend(range(start, stop + 1, step))
        else:
            sizes.append(_whole(item, "a size"))
    bad = [s for s in sizes if not 1 <= s <= MAX_GRAPH_SIZE]
    if bad:
        raise ValueError(f"engine_profile.graph_sizes: the size {bad[0]} is invalid: each must be in "
                         f"[1, {MAX_GRAPH_SIZE}]; {SIZES_FIX}")
    return sorted(set(sizes))  # in any order, repeats dropped (vLLM sorts and dedupes its capture sizes too)
