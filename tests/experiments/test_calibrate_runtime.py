"""Calibration against the runtime: the step recorder sees each engine step in the simulator's BatchShape
counters, and the one-command calibration runs end to end on a tiny checkpoint, writing a calibration the
simulator loads and the sim-vs-runtime comparison table."""
import argparse

import numpy as np
import pandas as pd
import pytest

from tessera.cost.calibration import Calibration
from tessera.experiments.calibrate_runtime import METRICS, run_calibration
from tessera.experiments.calibrate_runtime_steps import StepRecorder
from tessera.interface import BatchShape
from tessera.runtime.checkpoint import save_checkpoint
from tessera.runtime.config import ModelConfig
from tessera.runtime.engine import Engine, EngineConfig, model_spec
from tessera.runtime.model import Transformer
from tessera.runtime.sequence import SamplingParams
from tests.runtime.conftest import one_thread  # noqa: F401  (autouse: torch on one thread)


@pytest.fixture(scope="module")
def tiny():
    model = Transformer(ModelConfig(vocab_size=64, hidden_size=64, intermediate_size=64, num_hidden_layers=2,
                                    num_attention_heads=4, num_key_value_heads=2, eos_token_id=63))
    model.init_weights(seed=0, std=0.2)
    return model.eval()


def test_step_recorder_counts_like_the_simulator(tiny):
    engine = Engine(tiny, None, EngineConfig(max_num_seqs=4, max_num_batched_tokens=32, device_kv_gib=0.01))
    rec = StepRecorder(engine)
    prompts = {40: 5, 70: 3}  # prompt length -> max_tokens
    for length, out in prompts.items():
        engine.add_request([i % 60 for i in range(length)], SamplingParams(max_tokens=out, ignore_eos=True))
    engine.run()
    steps = rec.frame()
    assert len(steps) == engine.num_steps and (steps["time_s"] > 0).all()
    assert steps["prefill_tokens"].sum() == 110
    assert steps["decode_seqs"].sum() == (5 - 1) + (3 - 1)
    # decode j of a request reads prompt + j KV tokens (the token it writes included)
    assert steps["decode_kv_tokens"].sum() == sum(p + j for p, o in prompts.items() for j in range(1, o))
    # chunked prefill, budget 32: the 40-token prompt is chunks of 32 and 8 -> pairs 32*33/2 + 8*32 + 8*9/2
    assert steps.loc[0, "prefill_attn_pairs"] == 32 * 33 / 2
    assert (steps["prefill_tokens"] <= 32).all()


def test_calibration_runs_end_to_end_on_a_tiny_checkpoint(tmp_path):
    pytest.importorskip("matplotlib")
    ckpt = tmp_path / "tiny-ckpt"
    model = Transformer(ModelConfig(vocab_size=64, hidden_size=64, intermediate_size=64, num_hidden_layers=2,
                                    num_attention_heads=4, num_key_value_heads=2, eos_token_id=63))
    model.init_weights(seed=0, std=0.2)
    save_checkpoint(model, ckpt)
    out = tmp_path / "out"
    args = argparse.Namespace(model=ckpt, out=out, repeats=1, threads=1, num_requests=3, rate=20.0,
                              prompt_tokens=(40, 120), output_tokens=(4, 8), max_num_seqs=4,
                              max_num_batched_tokens=64, device_kv_gib=0.01, seed=0, quick=True,
                              kvpolicies=["full", "flexicache"], burst=True)
    table = run_calibration(args)
    assert len(table) == 3 * len(METRICS)
    for col in ("runtime_s", "sim_wall_s", "sim_adjusted_s", "sim_idle_core_s"):
        assert np.isfinite(table[col]).all() and (table[col] > 0).all(), col
    saved = pd.read_csv(out / "comparison.csv")
    assert list(saved["metric"].unique()) == ["ttft", "tpot", "e2e"]
    calib = Calibration.load(out)
    assert calib.gpu.name.startswith("CPU-") and calib.efficiency.overhead_s > 0
    spec = model_spec(model, "tiny-ckpt")
    decode = BatchShape(decode_seqs=2, decode_kv_tokens=200)
    assert calib.cost_model(spec).iteration_time(decode) > calib.efficiency.overhead_s
    for name in ("layer_profile.csv", "steps.csv", "requests.csv", "summary.json", "calibration.png",
                 "wall_clock_fit/calibration.json"):
        assert (out / name).exists(), name
    policies = pd.read_csv(out / "policy_comparison.csv")  # the KV-policy stage: flexicache on both backends
    assert set(policies["kvpolicy"]) == {"flexicache"} and len(policies) == 3 * len(METRICS)
    assert np.isfinite(policies["sim_adjusted_s"]).all() and (policies["runtime_s"] > 0).all()
    runs = pd.read_csv(out / "policy_requests.csv")
    assert (runs.loc[runs["backend"] == "runtime", "arrival_s"] == 0).all()  # --burst


def test_a_slowed_calibration_slows_the_whole_simulated_run(tiny):
    from tessera.cost.profile import LayerProfile
    from tessera.cost.roofline import RooflineEfficiency
    from tessera.experiments.backends.sim import run_sim
    from tessera.experiments.calibrate_runtime import latency_stats, run_spec
    from tessera.scheduling import SchedulerConfig
    from tessera.types import GPUSpec, Request

    gpu = GPUSpec("cpu-test", 8e9, 10e9, 50e9, "PCIe-Gen4-x16", "PCIe-Gen4-x16")
    profile = LayerProfile((1, 512), (1e-4, 1e-3))
    calib = Calibration(gpu, profile, RooflineEfficiency(0.3, 0.05, 3e-3, 1e-4))
    spec_model = model_spec(tiny, "tiny")
    requests = [Request(0, 0.0, 700, 20)]
    runs = [latency_stats(run_sim(run_spec(spec_model, gpu, SchedulerConfig(block_size=16), 2**26, c), requests,
                                  kv=None).requests) for c in (calib, calib.slowed(2.0))]
    for key in runs[0]:
        assert runs[1][key] == pytest.approx(2.0 * runs[0][key], rel=1e-9), key
