"""EngineCostModel: a roofline or profiled cost model plus an engine profile's fixed costs (engine_profile.py).

Adds per-iteration CPU time, eager launch gaps and the host-bound eager floor or the CUDA-graph decode path (padded
batch), all-reduce latency floors, and the attention backend's prefill efficiency in place of the roofline's.
"""
from __future__ import annotations

from bisect import bisect_left

from tessera.cost.engine_profile import EngineProfile
from tessera.cost.roofline import RooflineCostModel
from tessera.interface import BatchShape, CostModel
from tessera.types import LinkSpec


class EngineCostModel:
    """CostModel: base (built with overhead_s=0) + the profile's costs; plain float arithmetic per call."""

    def __init__(self, base: CostModel, profile: EngineProfile):
        roofline = base if isinstance(base, RooflineCostModel) else getattr(base, "_roofline", None)
        if roofline is None:
            raise TypeError(f"EngineCostModel needs a roofline or profiled base cost model, got {type(base).__name__}")
        if roofline.efficiency.overhead_s or roofline.efficiency.seq_overhead_s:
            raise ValueError("backend.cost.params.overhead_s / seq_overhead_s must be 0 with an engine profile: "
                             "engine_profile.cpu_fixed_s / cpu_per_seq_s set the engine's CPU time; drop them")
        self.base, self.profile, self.model, self.gpu, self.tp = base, profile, base.model, base.gpu, base.tp
        self._base_time = base.iteration_time
        self._roofline = roofline
        self._layers = roofline.model.num_layers
        self._sizes = profile.graph_sizes
        self._graph_max = profile.graph_sizes[-1] if profile.graph_sizes else 0
        self._graph_context = profile.graph_max_context
        self._launch_s = profile.launch_per_layer_s * self._layers
        self._host_s = profile.host_launch_per_layer_s * self._layers
        self._control_s = profile.control_per_token_s * (self.tp if self.tp > 1 else 0)  # per token, all workers
        frac = profile.prefill_flops_fraction(base.gpu.name)
        # Prefill attention compute at the backend's efficiency: scale the roofline's compute coefficient.
        self._pf_scale = 1.0 if frac is None else roofline.efficiency.flops_fraction / frac
        self._linear = base.layers_time if hasattr(base, "layers_time") else (
            lambda n: roofline.linear_time(n) + roofline.all_reduce_time(n))

    @property
    def reads_max_context(self) -> bool:
        """Whether a step's time depends on BatchShape.decode_max_context (the profile's graph_max_context)."""
        return self._graph_context is not None and self.profile.cuda_graphs

    def _prefill_attention_delta(self, pf: int, pairs: float) -> float:
        rl = self._roofline
        compute, memory = pairs * rl._pf_flop_s, pf * rl._pf_token_s
        return max(compute * self._pf_scale, memory) - max(compute, memory)

    def gpu_time(self, batch: BatchShape) -> float:
        """The iteration's GPU time: base + attention backend + launch gaps or graph padding + all-reduce floors;
        an eager step takes at least the host's launch time (kernels cannot run before they are issued)."""
        pf, ds = batch.prefill_tokens, batch.decode_seqs
        n = pf + ds
        t = self._base_time(batch)
        if n <= 0:
            return t
        p = self.profile
        if pf and self._pf_scale != 1.0:
            t += self._prefill_attention_delta(pf, batch.prefill_attn_pairs)
        graphed = p.cuda_graphs and n <= self._graph_max and (pf == 0 or p.graph_mixed)
        if graphed and self._graph_context is not None and batch.decode_max_context > self._graph_context:
            graphed = False  # vLLM v0: a context longer than the captured one runs the step eagerly
        if graphed:
            padded = self._sizes[bisect_left(self._sizes, n)]
            if padded != n:
                t += self._linear(padded) - self._linear(n)
        else:
            t += self._launch_s
        if self.tp > 1 and p.allreduce_floor_s:
            calls = 2 * self._layers
            per_call = self._roofline.all_reduce_time(n) / calls
            if per_call < p.allreduce_floor_s:
                t += calls * (p.allreduce_floor_s - per_call)
        if not graphed and t < self._host_s:
            return self._host_s
        return t

    def cpu_time(self, batch: BatchShape) -> float:
        """The engine's CPU time for the iteration (scheduling, input preparation, sampling, outputs, and shipping
        the sequences to the TP workers)."""
        p = self.profile
        t = p.cpu_fixed_s + p.cpu_per_seq_s * batch.num_seqs + p.cpu_per_token_s * batch.num_tokens
        if self._control_s:
            t += self._control_s * (batch.prefill_tokens + batch.decode_kv_read_tokens)
        return t

    def iteration_time(self, batch: BatchShape) -> float:
        if batch.prefill_tokens + batch.decode_seqs <= 0:
            return self._base_time(batch)
        gpu, cpu = self.gpu_time(batch), self.cpu_time(batch)
        if self.profile.cpu_overlapped:
            return gpu if gpu > cpu else cpu
        return gpu + cpu

    def transfer_time(self, num_bytes: float, link: LinkSpec) -> float:
        return self.base.transfer_time(num_bytes, link)


def with_engine_profile(build_base, profile: EngineProfile | None, params: dict) -> CostModel:
    """build_base(**params) wrapped in the profile (the base gets overhead_s=0), or unwrapped for none/neutral."""
    if profile is None or profile.is_neutral:
        return build_base(**params)
    for key in ("overhead_s", "seq_overhead_s"):
        if key in params:
            raise ValueError(f"backend.cost.params.{key} has no effect with engine_profile={profile.name}: the "
                             f"profile's cpu_* fields set the engine's CPU time; drop it")
    if profile.hbm_fraction is not None:
        if "hbm_fraction" in params:
            raise ValueError(f"backend.cost.params.hbm_fraction has no effect with engine_profile={profile.name}, "
                             f"which sets hbm_fraction={profile.hbm_fraction}: drop one of them")
        params = {**params, "hbm_fraction": profile.hbm_fraction}
    return EngineCostModel(build_base(**params, overhead_s=0.0), profile)
