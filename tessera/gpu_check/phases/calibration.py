"""Phase d, calibration: `python -m tessera.experiments.calibrate_runtime --quick --repeats 1` on the tiny
model into DIR/calibration, then its trace comparison (comparison.csv): TTFT / TPOT / E2E of the
simulator vs the runtime, as report lines.

calibrate_runtime runs the runtime on the device its `--device` flag names; a calibrate_runtime without
that flag calibrates the CPU only, and the kit says so (the CUDA part is listed as skipped).
"""
from __future__ import annotations

import math
import re
import subprocess
import sys

from tessera.gpu_check.result import Recorder
from tessera.paths import REPO_ROOT

MODULE = "tessera.experiments.calibrate_runtime"
MODEL = REPO_ROOT / "models" / "tessera-tiny-byte"
DRY_RUN_ARGS = ["--num-requests", "6", "--prompt-tokens", "64", "256", "--output-tokens", "8", "16", "--rate", "4"]


def has_device_flag() -> bool:
    text = subprocess.run([sys.executable, "-m", MODULE, "--help"], capture_output=True, text=True, timeout=120).stdout
    return re.search(r"--device(?![-\w])", text) is not None  # not --device-kv-gib


def command(out, device: str, device_flag: bool) -> list[str]:
    cmd = [sys.executable, "-m", MODULE, "--model", str(MODEL), "--out", str(out), "--quick", "--repeats", "1"]
    if device == "cpu":
        cmd += DRY_RUN_ARGS
    if device_flag:
        cmd += ["--device", device]
    return cmd


def run(rec: Recorder, device: str) -> None:
    import pandas as pd

    from tessera.cost.calibration import Calibration

    out = rec.out_dir / "calibration"
    device_flag = has_device_flag()
    if device == "cuda" and not device_flag:
        rec.skip("calibration of the CUDA runtime", f"{MODULE} has no --device flag: it calibrates the CPU "
                                                    "runtime (what ran here); see docs/gpu_check.md")
    cmd = command(out, device, device_flag)
    print("$ " + " ".join(cmd), flush=True)
    code = subprocess.run(cmd, cwd=REPO_ROOT, timeout=None).returncode  # the phase's own timeout bounds it
    if not rec.check("calibrate_runtime exits 0", code == 0, f"exit status {code}",
                     "runtime on " + (device if device_flag else "cpu")):
        return
    rec.check("calibration loads", Calibration.load(out).efficiency.overhead_s > 0, str(out / "calibration.json"))
    table = pd.read_csv(out / "comparison.csv")
    numbers = table[["runtime_s", "sim_wall_s", "err_wall", "sim_adjusted_s", "err_adjusted"]].to_numpy().ravel()
    rec.check("trace comparison complete and finite", len(table) == 9 and all(math.isfinite(v) for v in numbers),
              f"{len(table)} rows (TTFT, TPOT, E2E x mean, p50, p90)")
    rec.table("simulator vs runtime on the trace (comparison.csv)",
              [{"metric": r.metric, "stat": r.stat, "runtime_ms": 1e3 * r.runtime_s, "sim_wall_ms": 1e3 * r.sim_wall_s,
                "err_wall_%": 100 * r.err_wall, "err_adjusted_%": 100 * r.err_adjusted}
               for r in table.itertuples()])
    for r in table[table["stat"] == "mean"].itertuples():
        rec.target(f"{r.metric.upper()} mean, simulator error vs runtime (wall-clock fit)", 100 * abs(r.err_wall),
                   unit="% (absolute)", detail=f"runtime {1e3 * r.runtime_s:.2f} ms, sim {1e3 * r.sim_wall_s:.2f} ms",
                   lower_is_better=True)
