"""Pipeline parallelism: stage shape, a lone batch's trip through every stage, micro-batches, sends."""
import pytest

from tessera.cost import RooflineCostModel, RooflineEfficiency, make_cost_model
from tessera.cost.network import transfer_time
from tessera.cost.pipeline import PipelineCostModel, pipelined, stage_model
from tessera.hardware import gpu, peer_link
from tessera.interface import BatchShape
from tessera.memory import kv_bytes_per_token_per_gpu
from tessera.models import model

H100 = gpu("H100-SXM-80GB")
NVLINK = peer_link(H100)
LLAMA70 = model("Llama-2-70B")
EFF = RooflineEfficiency(overhead_s=1e-3)


def stage_cost(pp: int, tp: int = 2) -> RooflineCostModel:
    return RooflineCostModel(stage_model(LLAMA70, pp), H100, tp, efficiency=EFF)


def test_a_stage_holds_its_share_of_layers_weights_and_kv():
    stage = stage_model(LLAMA70, 4)
    assert stage.num_layers == 20 and stage.name == LLAMA70.name
    vocab = LLAMA70.vocab_size * LLAMA70.hidden_size
    assert 4 * stage.num_params == pytest.approx(LLAMA70.num_params + 2 * vocab, rel=0.01)  # each stage one vocab table
    assert kv_bytes_per_token_per_gpu(stage, 2) * 4 == kv_bytes_per_token_per_gpu(LLAMA70, 2)
    assert stage_model(LLAMA70, 3).num_layers == 27  # uneven: the largest stage
    assert stage_model(LLAMA70, 1) is LLAMA70


def test_a_moe_stage_keeps_its_active_share():
    stage = stage_model(model("Mixtral-8x7B"), 2)
    assert stage.num_layers == 16 and stage.is_moe
    assert stage.active_params / stage.num_params == pytest.approx(12.9 / 46.7, rel=0.03)


def test_a_lone_batch_runs_through_every_stage_in_turn_plus_the_sends():
    stage = stage_cost(4)
    pipe = PipelineCostModel(stage, 4, 1, NVLINK)
    batch = BatchShape(decode_seqs=16, decode_kv_tokens=16 * 500)
    gpu_time = stage.iteration_time(batch) - EFF.overhead_s
    send = transfer_time(2 * 16 * LLAMA70.hidden_size * 2, NVLINK)
    assert pipe.send_time(16) == send
    assert pipe.iteration_time(batch) == pytest.approx(EFF.overhead_s + 4 * gpu_time + 3 * send)


def test_micro_batches_split_by_sequence_and_keep_a_prefill_whole():
    pipe = PipelineCostModel(stage_cost(4), 4, 4, NVLINK)
    parts = pipe.micro_batches(BatchShape(prefill_tokens=900, prefill_attn_pairs=5e5, decode_seqs=10,
                                          decode_kv_tokens=10 * 300))
    assert len(parts) == 4
    assert [p.prefill_tokens for p in parts] == [900, 0, 0, 0]
    assert [p.decode_seqs for p in parts] == [2, 3, 3, 2]  # 11 sequences, 3 / 3 / 3 / 2, the prefill one of them
    assert sum(p.decode_kv_tokens for p in parts) == pytest.approx(3000)
    assert len(pipe.micro_batches(BatchShape(prefill_tokens=4000, prefill_attn_pairs=8e6))) == 1


def test_prefills_spread_over_the_micro_batches_like_requests_over_virtual_engines():
    """Four prompts waiting fill four micro-batches, one each (was: all in the first, so pp never sped a prefill)."""
    stage = stage_cost(4)
    pipe = PipelineCostModel(stage, 4, 4, NVLINK)
    batch = BatchShape(prefill_tokens=4 * 2000, prefill_attn_pairs=4 * 2000 * 1000.5, prefill_seqs=4)
    parts = pipe.micro_batches(batch)
    assert [(p.prefill_tokens, p.prefill_seqs, p.decode_seqs) for p in parts] == [(2000, 1, 0)] * 4
    assert sum(p.prefill_attn_pairs for p in parts) == pytest.approx(batch.prefill_attn_pairs)
    uneven = pipe.micro_batches(BatchShape(prefill_tokens=1001, prefill_attn_pairs=3e5, prefill_seqs=3,
                                           decode_seqs=5, decode_kv_tokens=500))
    assert [p.prefill_seqs for p in uneven] == [1, 1, 1, 0] and [p.decode_seqs for p in uneven] == [1, 1, 1, 2]
    assert sum(p.prefill_tokens for p in uneven) == 1001 and sum(p.num_seqs for p in uneven) == 8
    # four quarter-model stages each busy with four prompts: about one whole-model prefill of the four, not four
    lone = PipelineCostModel(stage, 4, 1, NVLINK)
    assert pipe.iteration_time(batch) < 0.5 * lone.iteration_time(batch)


def test_the_engine_cpu_of_every_micro_batch_bounds_the_step():
    """One driver process prepares every micro-batch: the step is at least their summed CPU time, also when the
    profile overlaps CPU with the GPU (was: one micro-batch's CPU, or none when overlapped)."""
    from tessera.cost.engine_cost import with_engine_profile
    from tessera.cost.engine_profile import EngineProfile

    def piped(overlapped: bool) -> PipelineCostModel:
        profile = EngineProfile(name="slow_cpu", cpu_fixed_s=0.05, cpu_per_seq_s=1e-3, cpu_overlapped=overlapped)
        def stage(m):
            return with_engine_profile(lambda **p: make_cost_model("roofline", m, H100, 1, **p), profile, {})
        return pipelined(stage, LLAMA70, 8, None, NVLINK)
    batch = BatchShape(decode_seqs=256, decode_kv_tokens=256 * 200)
    for overlapped in (False, True):
        pipe = piped(overlapped)
        cpu = sum(pipe.stage.cpu_time(b) for b in pipe.micro_batches(batch))
        assert cpu == pytest.approx(8 * 0.05 + 256 * 1e-3)
        assert pipe.iteration_time(batch) >= cpu
    # one sequence, one micro-batch: the trip carries the CPU unless the profile overlaps it with the GPU
    one = BatchShape(decode_seqs=1, decode_kv_tokens=200)
    serial, overlapped = piped(False), piped(True)
    gpu, cpu = serial.stage.gpu_time(one), serial.stage.cpu_time(one)
    trip = 8 * gpu + 7 * serial.send_time(1)
    assert serial.iteration_time(one) == pytest.approx(cpu + trip)
    assert overlapped.iteration_time(one) == pytest.approx(max(cpu, trip)) and cpu < trip


def test_micro_batches_hide_the_pipeline_at_a_large_batch_but_not_for_one_sequence():
    stage = stage_cost(4)
    lone, micro = PipelineCostModel(stage, 4, 1, NVLINK), PipelineCostModel(stage, 4, 4, NVLINK)
    big = BatchShape(decode_seqs=256, decode_kv_tokens=256 * 1000)
    assert micro.iteration_time(big) < 0.85 * lone.iteration_time(big)
    one = BatchShape(decode_seqs=1, decode_kv_tokens=1000)
    assert micro.iteration_time(one) == lone.iteration_time(one)


def test_more_micro_batches_than_stages_make_the_busiest_stage_the_bound():
    stage = stage_cost(2)
    pipe = PipelineCostModel(stage, 2, 8, NVLINK)
    batch = BatchShape(decode_seqs=64, decode_kv_tokens=64 * 100)
    parts = pipe.micro_batches(batch)
    busiest = sum(stage.iteration_time(p) - EFF.overhead_s for p in parts)
    assert pipe.iteration_time(batch) == pytest.approx(busiest)


def test_pipelining_does_not_make_one_sequence_faster_than_tensor_parallelism():
    # Same 8 GPUs: TP 8 splits every layer; TP 2 x PP 4 runs four quarter-models one after another.
    decode = BatchShape(decode_seqs=1, decode_kv_tokens=1000)
    tp8 = RooflineCostModel(LLAMA70, H100, 8, efficiency=EFF)
    pp4 = pipelined(lambda m: RooflineCostModel(m, H100, 2, efficiency=EFF), LLAMA70, 4, None, NVLINK)
    assert pp4.iteration_time(decode) > 2 * tp8.iteration_time(decode)


def test_bad_pipeline_settings_are_refused():
    with pytest.raises(ValueError, match="cluster.pp=81 exceeds Llama-2-70B's 80 layers"):
        stage_model(LLAMA70, 81)
    with pytest.raises(ValueError, match="cluster.pp=0"):
        stage_model(LLAMA70, 0)
    with pytest.raises(ValueError, match="cluster.pp_microbatches=0"):
        PipelineCostModel(stage_cost(2), 2, 0, NVLINK)


def test_micro_batches_carry_the_longest_context_to_a_stage_that_reads_it():
    """An engine profile's graph_max_context reaches each stage: beyond it the step is eager (here the host floor)."""
    from omegaconf import OmegaConf
    from tessera.cost import make_cost_model
    from tessera.cost.engine_cost import with_engine_profile
    from tessera.cost.engine_profile import EngineProfile
    from tessera.paths import REPO_ROOT
    conf = OmegaConf.to_container(OmegaConf.load(REPO_ROOT / "conf" / "engine_profile" / "vllm_v0_multistep.yaml"))
    profile = EngineProfile.from_dict(conf)
    llama = model("Llama-3-8B")  # a small stage: its eager step is held up by the host's launches
    h100 = gpu("H100-SXM-80GB")
    piped = pipelined(lambda m: with_engine_profile(lambda **p: make_cost_model("roofline", m, h100, 1, **p),
                                                    profile, {}), llama, 2, None, peer_link(h100))
    assert piped.reads_max_context
    within, beyond = (BatchShape(decode_seqs=4, decode_kv_tokens=4 * 8000, decode_max_context=c) for c in (8000, 9000))
    assert [b.decode_max_context for b in piped.micro_batches(beyond)] == [9000, 9000]
    assert piped.iteration_time(beyond) > piped.iteration_time(within)
