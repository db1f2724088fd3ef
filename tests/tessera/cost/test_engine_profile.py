"""Engine profiles: every shipped profile loads and validates, and each cost it adds behaves as its field says.

CPU time, eager launch gaps, the CUDA-graph decode path with padding, all-reduce floors, the attention backend
and the overlap scheduler are each checked against the plain cost model.
"""
from dataclasses import replace

import pytest
from omegaconf import OmegaConf

from tessera.cost import make_cost_model
from tessera.cost.engine_cost import EngineCostModel, with_engine_profile
from tessera.cost.engine_profile import EngineProfile, expand_sizes
from tessera.interface import BatchShape
from tessera.paths import REPO_ROOT

PROFILES = sorted(p.stem for p in (REPO_ROOT / "conf" / "engine_profile").glob("*.yaml"))


def load(name, **changes):
    conf = OmegaConf.to_container(OmegaConf.load(REPO_ROOT / "conf" / "engine_profile" / f"{name}.yaml"))
    return EngineProfile.from_dict({**conf, **changes})


def cost(profile, model="Llama-2-7B", gpu="H100-SXM-80GB", tp=1):
    return with_engine_profile(lambda **p: make_cost_model("roofline", model, gpu, tp, **p), profile, {})


def decode(b, kv=1000):
    return BatchShape(decode_seqs=b, decode_kv_tokens=b * kv)


@pytest.mark.parametrize("name", PROFILES)
def test_every_shipped_profile_loads_and_prices_a_step(name):
    profile = load(name)
    for gpu in ("A100-SXM-80GB", "H100-SXM-80GB"):
        model = cost(profile, gpu=gpu, tp=2)
        t = model.iteration_time(BatchShape(prefill_tokens=512, prefill_attn_pairs=512 * 513 / 2, decode_seqs=8,
                                            decode_kv_tokens=8000))
        assert 0 < t < 1


def test_tessera_default_is_the_plain_cost_model():
    plain = make_cost_model("roofline", "Llama-2-7B", "H100-SXM-80GB")
    wrapped = cost(load("tessera_default"))
    assert type(wrapped) is type(plain) and wrapped.iteration_time(decode(8)) == plain.iteration_time(decode(8))


def test_cpu_time_is_fixed_plus_per_sequence_plus_per_token():
    profile = EngineProfile(name="t", cpu_fixed_s=1e-3, cpu_per_seq_s=1e-4, cpu_per_token_s=1e-6)
    model = cost(profile)
    gpu = model.gpu_time(decode(8))
    assert model.iteration_time(decode(8)) == pytest.approx(gpu + 1e-3 + 8e-4 + 8e-6)


def test_every_prompt_of_a_prefill_step_counts_as_a_sequence():
    profile = EngineProfile(name="t", cpu_fixed_s=0.0, cpu_per_seq_s=1e-4)
    model = cost(profile)
    three = BatchShape(prefill_tokens=300, prefill_attn_pairs=3 * 100 * 101 / 2, decode_seqs=2, decode_kv_tokens=2000,
                       prefill_seqs=3)
    assert model.cpu_time(three) == pytest.approx(5e-4)
    assert model.cpu_time(replace(three, prefill_seqs=0)) == pytest.approx(3e-4)  # by hand: one prompt


def test_the_control_plane_costs_every_sequence_token_once_per_tp_worker():
    profile = EngineProfile(name="c", cpu_fixed_s=0.0, control_per_token_s=1e-8)
    shape = BatchShape(prefill_tokens=300, prefill_attn_pairs=300 * 301 / 2, decode_seqs=4, decode_kv_tokens=4000)
    for tp in (2, 4, 8):
        assert cost(profile, "Llama-2-70B", tp=tp).cpu_time(shape) == pytest.approx(tp * 4300 * 1e-8)
    assert cost(profile).cpu_time(shape) == 0.0  # TP 1: no workers to ship to


def test_eager_steps_pay_launch_gaps_per_layer_and_graphed_decode_does_not():
    eager = cost(EngineProfile(name="e", launch_per_layer_s=5e-5))
    graphs = cost(EngineProfile(name="g", launch_per_layer_s=5e-5, cuda_graphs=True, graph_sizes=(1, 2, 4, 8)))
    base = cost(EngineProfile(name="b", cpu_fixed_s=0.0, cuda_graphs=True, graph_sizes=(1, 2, 4, 8)))
    assert eager.iteration_time(decode(8)) - graphs.iteration_time(decode(8)) == pytest.approx(32 * 5e-5)
    prefill = BatchShape(prefill_tokens=4, prefill_attn_pairs=10)  # not a decode: eager even with graphs
    assert graphs.gpu_time(prefill) == pytest.approx(base.gpu_time(prefill) + 32 * 5e-5)


def test_eager_steps_take_at_least_the_hosts_launch_time_and_graphed_ones_do_not():
    host = EngineProfile(name="h", cpu_fixed_s=0.0, host_launch_per_layer_s=3e-4, cuda_graphs=True, graph_sizes=(1, 2))
    plain = EngineProfile(name="p", cpu_fixed_s=0.0, cuda_graphs=True, graph_sizes=(1, 2))
    for tp in (4, 8):  # 70B: the kernels of a small decode step take less than 80 layers x 0.3 ms at TP 4 and 8
        floored, kernels = cost(host, "Llama-2-70B", tp=tp), cost(plain, "Llama-2-70B", tp=tp)
        assert kernels.gpu_time(decode(4)) < 80 * 3e-4
        assert floored.gpu_time(decode(4)) == pytest.approx(80 * 3e-4)  # the same at both TP degrees
        assert floored.gpu_time(decode(2)) == kernels.gpu_time(decode(2))  # graphed: no host launches
        big = BatchShape(prefill_tokens=8192, prefill_attn_pairs=8192 * 8193 / 2)  # compute-bound: host hidden
        assert kernels.gpu_time(big) > 80 * 3e-4 and floored.gpu_time(big) == kernels.gpu_time(big)


def test_vllm_v0_eager_reproduces_its_source_step():
    # PR #1440: Llama-2-7B, batch 1, 1.2 s eager over 100 tokens = 12.0 ms a step (host 10.6 ms + CPU 1.4 ms)
    for gpu in ("A100-SXM-80GB", "H100-SXM-80GB"):
        step = cost(load("vllm_v0_eager"), gpu=gpu).iteration_time(decode(1, kv=50))
        assert step == pytest.approx(12.0e-3)


def test_graphed_decode_is_priced_at_the_padded_batch_size():
    plain = make_cost_model("roofline", "Llama-2-70B", "H100-SXM-80GB", 4, overhead_s=0.0)
    graphs = EngineCostModel(plain, EngineProfile(name="g", cuda_graphs=True, graph_sizes=(8, 256)))
    shape = decode(9)
    extra = graphs.gpu_time(shape) - plain.iteration_time(shape)
    assert extra == pytest.approx(plain.linear_time(256) + plain.all_reduce_time(256)
                                  - plain.linear_time(9) - plain.all_reduce_time(9))
    assert extra > 0


def test_allreduce_floor_applies_per_call_under_tp_only():
    floor = EngineProfile(name="f", allreduce_floor_s=1e-4)
    tp1, tp4 = cost(floor), cost(floor, tp=4)
    assert tp1.gpu_time(decode(1)) == make_cost_model("roofline", "Llama-2-7B", "H100-SXM-80GB", 1,
                                                      overhead_s=0.0).iteration_time(decode(1))
    plain4 = make_cost_model("roofline", "Llama-2-7B", "H100-SXM-80GB", 4, overhead_s=0.0)
    # 64 calls of at least 100 us: the floor dominates a batch-1 decode's all-reduces
    assert tp4.gpu_time(decode(1)) - plain4.iteration_time(decode(1)) == pytest.approx(
        64 * 1e-4 - plain4.all_reduce_time(1))


def test_attention_backend_changes_prefill_attention_only():
    fa2, fa3 = cost(EngineProfile(name="a", attention_backend="flash_attn")), cost(
        EngineProfile(name="b", attention_backend="flash_attn3"))
    long = BatchShape(prefill_tokens=8192, prefill_attn_pairs=8192 * 8193 / 2)
    assert fa2.iteration_time(long) > fa3.iteration_time(long)
    assert fa2.iteration_time(decode(8)) == fa3.iteration_time(decode(8))
    with pytest.raises(ValueError, match="flash_attn3 has no ampere kernel"):
        cost(EngineProfile(name="c", attention_backend="flash_attn3"), gpu="A100-SXM-80GB")


def test_overlapped_cpu_hides_behind_gpu_time():
    over = cost(EngineProfile(name="o", cpu_fixed_s=1e-3, cpu_overlapped=True))
    shape = decode(64, kv=4000)
    assert over.iteration_time(shape) == max(over.gpu_time(shape), 1e-3)


def test_hbm_fraction_replaces_the_cost_models_bandwidth_share():
    plain = EngineProfile(name="p", cpu_fixed_s=2e-3)
    slow = replace(plain, hbm_fraction=0.4)
    shape = decode(1, kv=100)  # weight-read bound
    base = cost(plain).gpu_time(shape)
    assert cost(slow).gpu_time(shape) == pytest.approx(base * 0.8 / 0.4, rel=0.05)  # RooflineEfficiency's 0.8
    assert cost(replace(plain, hbm_fraction=0.8)).gpu_time(shape) == pytest.approx(base, rel=1e-12)
    assert not slow.is_neutral and not replace(EngineProfile(name="d"), hbm_fraction=0.8).is_neutral
    with pytest.raises(ValueError, match="backend.cost.params.hbm_fraction"):
        with_engine_profile(lambda **p: None, slow, {"hbm_fraction": 0.5})
    for bad in (0.0, 1.5, True, "0.5"):
        with pytest.raises(ValueError, match="engine_profile.hbm_fraction"):
            EngineProfile(name="x", hbm_fraction=bad)


def test_bad_fields_name_the_key():
    with pytest.raises(ValueError, match="engine_profile.cpu_fixed_s"):
        EngineProfile(name="x", cpu_fixed_s=-1.0)
    with pytest.raises(ValueError, match="engine_profile.graph_sizes"):
        EngineProfile(name="x", cuda_graphs=True, graph_sizes=(4, 2))
    with pytest.raises(ValueError, match="engine_profile.launch_gap is not a profile field"):
        EngineProfile.from_dict({"name": "x", "launch_gap": 1})
    with pytest.raises(ValueError, match="backend.cost.params.overhead_s"):
        with_engine_profile(lambda **p: None, EngineProfile(name="x", cpu_per_seq_s=1e-5), {"overhead_s": 0.0})
    assert expand_sizes([1, 2, {"start": 8, "stop": 24, "step": 8}]) == [1, 2, 8, 16, 24]
    assert replace(load("vllm_v1_cudagraph")).graph_sizes[-1] == 512


@pytest.mark.parametrize("spec, message", [
    ([{"start": 8, "stop": 64}], "needs exactly start, stop and step"),
    ([{"start": 8, "stop": 64, "step": 8, "foo": 1}], "needs exactly start, stop and step"),
    ([1, 2, "abc"], "is not a whole number"),
    ([1.5, 2.7], "is not a whole number"),
    ([1, True], "is not a whole number"),
    ([{"start": 8, "stop": 64, "step": 8.5}], "is not a whole number"),
    (5, "is not a list"),
    (None, "is not a list"),
    ("1,2", "is not a list"),
    ([{"start": 8, "stop": 64, "step": 0}], "is invalid"),
    ([{"start": 1, "stop": 10**12, "step": 1}], "is invalid"),  # refused before a range is built
    ([0, 1], "the size 0 is invalid"),
    ([1, 20_000], "the size 20000 is invalid"),
])
def test_graph_sizes_are_refused_by_name_unless_whole_and_bounded(spec, message):
    with pytest.raises(ValueError, match="engine_profile.graph_sizes") as err:
        expand_sizes(spec)
    assert message in str(err.value)


def test_graph_sizes_are_sorted_and_deduplicated_as_vllm_does():
    assert expand_sizes([1, 2, 4, 8, {"start": 8, "stop": 24, "step": 8}]) == [1, 2, 4, 8, 16, 24]
    assert expand_sizes([8, 4, 2, 1, 1]) == [1, 2, 4, 8]


def test_a_profile_with_graphs_off_does_not_read_its_graph_settings():
    """engine_profile.cuda_graphs=false on a graphed profile: its graph sizes, mixed flag and context limit are
    dropped, not refused (an override of one of them is: experiments/engine_checks.py)."""
    conf = {"name": "x", "cuda_graphs": False, "graph_sizes": [1, 2], "graph_mixed": True, "graph_max_context": 8192}
    profile = EngineProfile.from_dict(conf)
    assert (profile.graph_sizes, profile.graph_mixed, profile.graph_max_context) == ((), False, None)


def test_graph_settings_without_graphs_are_refused():
    with pytest.raises(ValueError, match=r"graph_sizes=\[1, 2\] has no effect with cuda_graphs=false"):
        EngineProfile(name="x", graph_sizes=(1, 2))
    with pytest.raises(ValueError, match="graph_mixed=True has no effect with cuda_graphs=false"):
        EngineProfile(name="x", graph_mixed=True)
    with pytest.raises(ValueError, match="engine_profile.graph_sizes"):
        EngineProfile(name="x", cuda_graphs=True, graph_sizes=(1, 2.5))


def test_a_context_longer_than_the_captured_one_runs_the_decode_step_eagerly():
    """vLLM v0 (graph_max_context 8192): the same batch is graphed at 8,192 tokens of context and eager (the host's
    launch floor) at 8,193; a shape that does not know its context (0) is not checked."""
    v0 = cost(load("vllm_v0_multistep"), "Llama-2-70B", tp=4)
    assert v0.reads_max_context
    at_limit, beyond = decode(1, kv=8192), decode(1, kv=8193)
    at_limit.decode_max_context, beyond.decode_max_context = 8192, 8193
    assert v0.gpu_time(at_limit) < 80 * 3.75e-4 <= v0.gpu_time(beyond)
    assert v0.gpu_time(beyond) == pytest.approx(80 * 3.75e-4)  # the host floor: kernels take less
    assert v0.gpu_time(decode(1, kv=8193)) < 80 * 3.75e-4  # context unknown (0): graphed
    unlimited = cost(load("vllm_v0_multistep", graph_max_context=None), "Llama-2-70B", tp=4)
    assert not unlimited.reads_max_context
    assert unlimited.gpu_time(beyond) == unlimited.gpu_time(decode(1, kv=8193))


def test_graph_max_context_must_be_a_token_count_with_graphs_on():
    for bad in (0, -5, 2.5, True, "8k"):
        with pytest.raises(ValueError, match="engine_profile.graph_max_context"):
            EngineProfile(name="x", cuda_graphs=True, graph_sizes=(1,), graph_max_context=bad)
    with pytest.raises(ValueError, match="graph_max_context=8192 has no effect with cuda_graphs=false"):
        EngineProfile(name="x", graph_max_context=8192)
    assert [load(name).graph_max_context for name in ("vllm_v0_multistep", "vllm_v1_cudagraph", "sglang")] == \
        [8192, None, None]
