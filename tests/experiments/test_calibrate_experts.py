"""calibrate_experts: one worker's profile of a checkpoint, and the fit that corrects an op profile measured while
the machine was busier than during the step sweep (the steps are the ground truth)."""
import dataclasses

import numpy as np
import pytest

from tessera.cost.calibration import fit_calibration, predict_steps
from tessera.experiments.calibrate_experts import OPS_SCALES, expert_costs, fit_folder, profile_worker
from tessera.experiments.calibrate_runtime import cpu_spec
from tessera.paths import REPO_ROOT

TINY = str(REPO_ROOT / "models" / "tessera-tiny-byte")


@pytest.fixture(scope="module")
def consistent_profile():
    """A real profile of the tiny checkpoint (its batch shapes) with synthetic times: a layer-op profile that grows
    faster than linearly in tokens, and step times that profile's own fit predicts. Steps and ops agree exactly
    and nothing depends on how fast (or how loaded) this machine is."""
    profile = profile_worker(0, TINY, 4, 256, 0.01, True, 0)
    n = profile.ops["num_tokens"].to_numpy(float)
    ops = profile.ops.assign(time_ms=0.5 + 0.01 * n**1.3, cpu_ms=0.5 + 0.01 * n**1.3)
    tokens = (profile.steps["prefill_tokens"] + profile.steps["decode_seqs"]).to_numpy(float)
    synthetic = profile.steps.assign(time_s=profile.spec.num_layers * np.interp(tokens, n, ops["time_ms"]) / 1e3
                                     + 0.002)
    truth, _ = fit_calibration(synthetic, ops, profile.spec, cpu_spec(profile.machine))
    steps = profile.steps.assign(time_s=predict_steps(truth, profile.spec, profile.steps))
    return dataclasses.replace(profile, ops=ops, steps=steps)


def test_a_profile_has_steps_ops_and_a_load_time(consistent_profile):
    p = consistent_profile
    assert {"prefill_tokens", "decode_seqs", "time_s"} <= set(p.steps.columns) and p.load_s > 0
    assert p.ops["num_tokens"].is_monotonic_increasing and (p.steps["time_s"] > 0).all()


def test_a_consistent_op_profile_is_kept_unscaled(consistent_profile):
    calib = fit_folder([consistent_profile])
    assert calib.fit["ops_scale"] == 1.0 and calib.fit["step_relative_error"]["mean_abs"] < 0.01


def test_an_inflated_op_profile_is_scaled_back_to_the_measured_steps(consistent_profile):
    busy = dataclasses.replace(consistent_profile, ops=consistent_profile.ops.assign(
        time_ms=consistent_profile.ops["time_ms"] * 3))  # ops timed while the machine was 3x busier
    unscaled, _ = fit_calibration(busy.steps, busy.ops, busy.spec, cpu_spec(busy.machine))
    calib = fit_folder([busy])
    assert 1.0 in OPS_SCALES and 0.25 <= calib.fit["ops_scale"] <= 0.45  # ~1/3 on the grid
    err = calib.fit["step_relative_error"]["mean_abs"]
    assert err < unscaled.fit["step_relative_error"]["mean_abs"] and err < 0.1
    assert np.isclose(min(calib.fit["ops_scale_errors"].values()), err, atol=0.0101)
    costs = expert_costs("e", "instruct", calib, busy.spec, busy.load_s, 40.0, 12.0, 16)
    assert costs.decode_step_at(8) >= costs.decode_step_at(1) > 0 and costs.prefill_s_per_token > 0
