"""Calibration fitting: it recovers a known machine from its own step times, slowing scales every time,
and a saved calibration loads back into the same cost model."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tessera.cost.calibration import Calibration, fit_calibration, nonneg_lstsq, predict_steps, step_shape
from tessera.cost.profile import LayerProfile
from tessera.cost.roofline import RooflineEfficiency
from tessera.types import GPUSpec, ModelSpec

TINY = ModelSpec(name="tiny-byte", hf_id="none", num_layers=4, hidden_size=128, num_heads=4, num_kv_heads=2,
                 head_dim=32, intermediate_size=384, vocab_size=264, num_params=855_168, dtype_bytes=4)
CPU = GPUSpec("cpu-test", hbm_bytes=8e9, hbm_bandwidth_Bps=10e9, peak_bf16_flops=50e9,
              host_link="PCIe-Gen4-x16", peer_link="PCIe-Gen4-x16")
OPS = pd.DataFrame({"num_tokens": [1, 16, 64, 256, 1024]})
OPS["time_ms"] = 0.05 + 0.002 * OPS["num_tokens"]


def shapes() -> pd.DataFrame:
    rows = [{"prefill_tokens": t, "prefill_attn_pairs": t * c + t * (t + 1) / 2, "decode_seqs": 0,
             "decode_kv_tokens": 0.0} for t in (16, 64, 256, 512) for c in (0, 512, 1536)]
    rows += [{"prefill_tokens": 0, "prefill_attn_pairs": 0.0, "decode_seqs": b, "decode_kv_tokens": b * c}
             for b in (1, 2, 4, 8, 16) for c in (128, 512, 2048)]
    return pd.DataFrame(rows)


def truth(eff=RooflineEfficiency(0.3, 0.05, 4e-3, 2e-4)) -> Calibration:
    return Calibration(CPU, LayerProfile.from_table(OPS), eff)


def test_nonneg_lstsq_keeps_coefficients_non_negative():
    X = np.array([[1.0, 1.0], [1.0, 2.0], [1.0, 3.0]])
    y = np.array([3.0, 2.0, 1.0])  # unconstrained slope is -1
    b = nonneg_lstsq(X, y)
    assert (b >= 0).all() and b[1] == 0 and b[0] == pytest.approx(2.0)


def test_fit_recovers_a_known_machine_from_its_step_times():
    steps = shapes()
    steps["time_s"] = predict_steps(truth(), TINY, steps)
    calib, table = fit_calibration(steps, OPS, TINY, CPU)
    e = calib.efficiency
    assert (e.flops_fraction, e.hbm_fraction, e.overhead_s, e.seq_overhead_s) == pytest.approx(
        (0.3, 0.05, 4e-3, 2e-4), rel=1e-6)
    assert calib.fit["step_relative_error"]["mean_abs"] < 1e-6
    assert list(table["num_tokens"]) == list(OPS["num_tokens"])


def test_fit_counts_every_prompt_of_a_step_when_the_table_says_how_many():
    # steps with several prompts (prefill_seqs, as experiments/calibrate_runtime_steps.py records them): the
    # per-sequence time is recovered exactly; read as one prompt per step (no column) it is not
    steps = shapes()
    steps["prefill_seqs"] = np.where(steps["prefill_tokens"] > 0, steps["prefill_tokens"] // 16, 0)
    steps["time_s"] = predict_steps(truth(), TINY, steps)
    calib, _ = fit_calibration(steps, OPS, TINY, CPU)
    assert calib.efficiency.seq_overhead_s == pytest.approx(2e-4, rel=1e-6)
    assert calib.fit["step_relative_error"]["mean_abs"] < 1e-6
    blind, _ = fit_calibration(steps.drop(columns="prefill_seqs"), OPS, TINY, CPU)
    assert blind.fit["step_relative_error"]["mean_abs"] > 1e-3


def test_fit_moves_with_the_data():
    steps = shapes()
    steps["time_s"] = predict_steps(truth(RooflineEfficiency(0.1, 0.01, 1e-3)), TINY, steps) * 1.02
    moved, _ = fit_calibration(steps, OPS, TINY, CPU)  # 2% multiplicative noise-free offset
    assert moved.efficiency.hbm_fraction == pytest.approx(0.01, rel=0.05)
    assert moved.efficiency.flops_fraction == pytest.approx(0.1, rel=0.05)
    assert moved.fit["step_relative_error"]["mean_abs"] < 0.02


def test_slowed_scales_every_step_time():
    base, slow = truth(), truth().slowed(2.5)
    for row in shapes().itertuples():
        shape = step_shape(row)
        assert slow.cost_model(TINY).iteration_time(shape) == pytest.approx(
            2.5 * base.cost_model(TINY).iteration_time(shape), rel=1e-9)


def test_save_and_load_round_trip(tmp_path):
    steps = shapes()
    steps["time_s"] = predict_steps(truth(), TINY, steps)
    calib, table = fit_calibration(steps, OPS, TINY, CPU, sources={"what": "test"})
    calib.save(tmp_path, table)
    back = Calibration.load(tmp_path)
    assert back.gpu == CPU and back.efficiency == calib.efficiency
    assert np.allclose(predict_steps(back, TINY, steps), predict_steps(calib, TINY, steps))
    assert back.fit["sources"] == {"what": "test"}


SMOLLM2 = ModelSpec(name="smollm2-135m-instruct", hf_id="smollm2-135m-instruct", num_layers=30, hidden_size=576,
                    num_heads=9, num_kv_heads=3, head_dim=64, intermediate_size=1536, vocab_size=49152,
                    num_params=134515008.0, dtype_bytes=4, max_position=8192)
# the project machine as profiled with those steps (experiments/calibrate_runtime.py cpu_spec: 1 thread)
MEASURED_CPU = GPUSpec("cpu-measured", hbm_bytes=25.3e9, hbm_bandwidth_Bps=11.04e9, peak_bf16_flops=118.7e9,
                       host_link="PCIe-Gen4-x16", peer_link="PCIe-Gen4-x16")


@pytest.mark.parametrize("scale", [0.206, 0.729, 1.0, 1.5])
def test_a_real_cpu_sweep_fits_without_bias_whatever_the_op_profile_scale(scale):
    # Steps and layer ops SmolLM2-135M measured on the project's 2-core VM (1 torch thread, step_sweep of
    # experiments/calibrate_experts.py). The fit used to hold the LM head at the previous round's bandwidth: on
    # these steps it returned calibrations 25-47% fast of their own fit (median error -0.27 at scale 0.206,
    # -0.47 at 1.0) depending on the scale. Its calibration must price the steps as the fit did: no bias.
    data = Path(__file__).parent / "data"
    steps = pd.read_csv(data / "smollm2_cpu_steps.csv")
    ops = pd.read_csv(data / "smollm2_cpu_ops.csv")
    calib, _ = fit_calibration(steps, ops.assign(time_ms=ops["time_ms"] * scale), SMOLLM2, MEASURED_CPU)
    err = calib.fit["step_relative_error"]
    assert abs(err["median"]) < 0.08 and err["mean_abs"] < 0.2, err
    rel = predict_steps(calib, SMOLLM2, steps) / steps["time_s"] - 1
    assert abs(rel.mean()) < 0.08 and abs(rel.median()) < 0.05
