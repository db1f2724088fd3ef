"""Runs the selected phases one after another, each in a subprocess (its own session) with a timeout,
so a hang or a CUDA crash costs one phase, never the kit.

Time: the budget is shared among the selected phases in proportion to their nominal seconds; time a
phase leaves unused carries over to the next ones, and no phase may run past the budget's end.
A failed env phase (e.g. torch too old) skips the others: they could only fail in confusing ways.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tessera.gpu_check.phases import Phase
from tessera.gpu_check.result import PhaseResult
from tessera.paths import REPO_ROOT

MIN_TIMEOUT_S = 5.0
KILL_GRACE_S = 5.0


def phase_env(device: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1", MPLBACKEND="Agg")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    if device == "cpu":
        env["TRITON_INTERPRET"] = "1"  # read when the kernels are defined: before any tessera.kernels import
    else:
        env.pop("TRITON_INTERPRET", None)  # on a GPU the kernels must compile for real
    return env


def run_phase(phase: Phase, device: str, out: Path, timeout_s: float, fail: str | None = None) -> PhaseResult:
    log = out / "logs" / f"{phase.name}.log"
    json_path = out / "phases" / f"{phase.name}.json"
    json_path.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "tessera.gpu_check.phase_main", phase.name, "--device", device, "--out", str(out)]
    if fail:
        cmd += ["--fail", fail]
    start = time.perf_counter()
    with open(log, "w") as f:
        f.write(f"$ {' '.join(cmd)}\n(timeout {timeout_s:.0f} s)\n")
        f.flush()
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=phase_env(device),
                                start_new_session=True)
        timed_out = False
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            code = _kill_session(proc)
    wall = time.perf_counter() - start
    result = PhaseResult.load(json_path) if json_path.exists() else PhaseResult(phase.name)
    if timed_out:
        result.status = "timeout"
        result.reason = f"killed after its {timeout_s:.0f} s timeout; checks up to then are kept"
    elif result.status == "running":  # died without concluding: a crash (signal) or os._exit
        result.status = "error"
        result.reason = f"the phase process died ({_describe_exit(code)}) before concluding; see its log"
    result.wall_s, result.timeout_s, result.log = wall, timeout_s, str(log.relative_to(out))
    return result


def _kill_session(proc: subprocess.Popen) -> int:
    """SIGTERM to the phase's process group (it may have workers), then SIGKILL after a grace period."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            return proc.wait(timeout=KILL_GRACE_S)
        except subprocess.TimeoutExpired:
            continue
    return proc.wait()


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit status {code}"


def skipped(phase: Phase, reason: str) -> PhaseResult:
    return PhaseResult(phase.name, status="skipped", reason=reason)


def run_all(phases: list[Phase], device: str, out: Path, budget_s: float, fail: dict[str, str],
            progress=print) -> list[PhaseResult]:
    (out / "logs").mkdir(parents=True, exist_ok=True)
    (out / "phases").mkdir(parents=True, exist_ok=True)
    runnable = [p for p in phases if not (p.needs_cuda and device == "cpu")]
    total_nominal = sum(p.nominal_s for p in runnable) or 1.0
    deadline = time.perf_counter() + budget_s
    carry = 0.0
    results = []
    for phase in phases:
        if phase.needs_cuda and device == "cpu":
            results.append(skipped(phase, "needs CUDA: run with --device cuda on a GPU node"))
        elif results and results[0].name == "env" and results[0].failed:
            results.append(skipped(phase, f"env failed: {results[0].reason}"))
        elif deadline - time.perf_counter() < MIN_TIMEOUT_S:
            results.append(PhaseResult(phase.name, status="timeout", reason=f"the {budget_s:.0f} s budget is spent"))
        else:
            share = budget_s * phase.nominal_s / total_nominal
            timeout = max(MIN_TIMEOUT_S, min(share + carry, deadline - time.perf_counter()))
            progress(f"[{phase.name}] running (timeout {timeout:.0f} s): {phase.summary}")
            result = run_phase(phase, device, out, timeout, fail.get(phase.name))
            carry = max(0.0, share + carry - result.wall_s)
            results.append(result)
        r = results[-1]
        progress(f"[{phase.name}] {r.status.upper()}" + (f" in {r.wall_s:.0f} s" if r.wall_s else "")
                 + (f": {r.reason}" if r.reason else ""))
    return results
