"""calibrate_experts: one worker's profile of a checkpoint, and the fit that corrects an op profile measured while
the machine was busier than during the step sweep (the steps are the ground truth)."""
import dataclasses

from tessera.cost.calibration import fit_calibration
from tessera.experiments.calibrate_experts import OPS_SCALES, expert_costs, fit_folder, profile_worker
from tessera.experiments.calibrate_runtime import cpu_spec
from tessera.paths import REPO_ROOT

TINY = str(REPO_ROOT / "models" / "tessera-tiny-byte")


def test_an_inflated_op_profile_is_scaled_back_to_the_measured_steps():
    profile = profile_worker(0, TINY, 4, 256, 0.01, True, 0)
    assert {"prefill_tokens", "decode_seqs", "time_s"} <= set(profile.steps.columns) and profile.load_s > 0
    busy = dataclasses.replace(profile, ops=profile.ops.assign(time_ms=profile.ops["time_ms"] * 3))
    unscaled, _ = fit_calibration(busy.steps, busy.ops, busy.spec, cpu_spec(busy.machine))
    calib = fit_folder([busy])
    assert 1.0 in OPS_SCALES and 0.1 <= calib.fit["ops_scale"] <= 0.6
    err = calib.fit["step_relative_error"]["mean_abs"]
    assert err < unscaled.fit["step_relative_error"]["mean_abs"]
    costs = expert_costs("e", "instruct", calib, profile.spec, profile.load_s, 40.0, 12.0, 16)
    assert costs.decode_step_at(8) >= costs.decode_step_at(1) > 0 and costs.prefill_s_per_token > 0
