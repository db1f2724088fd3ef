"""Calibration fitting: it recovers a known machine from its own step times, slowing scales every time,
and a saved calibration loads back into the same cost model."""
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
