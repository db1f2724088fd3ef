"""The kit's CI dry run (`python -m tessera.gpu_check --device cpu`) end to end in a subprocess, and its
robustness: a failing, crashing or hanging phase costs that phase only, and the exit status names it."""
import json
import subprocess
import sys

import pytest

from tessera.paths import REPO_ROOT


def kit(out, *args, timeout=300):
    cmd = [sys.executable, "-m", "tessera.gpu_check", "--out", str(out), *args]
    return subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)


def test_dry_run(tmp_path):
    """One run (about 20 s), three views of it; one test so that pytest-xdist never runs it twice."""
    proc = kit(tmp_path, "--device", "cpu")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    passes_and_skips_only_what_needs_cuda(tmp_path, report)
    checks_every_kernel_and_policy(report)
    writes_the_markdown(tmp_path)


def passes_and_skips_only_what_needs_cuda(out, report):
    status = {p["name"]: p["status"] for p in report["phases"]}
    assert status == {"env": "passed", "kernels": "passed", "engine": "passed", "bench": "skipped",
                      "calibration": "passed"}
    phases = {p["name"]: p for p in report["phases"]}
    assert "needs CUDA" in phases["bench"]["reason"]
    for name in ("env", "kernels", "engine", "calibration"):
        assert phases[name]["checks"] and all(c["passed"] for c in phases[name]["checks"]), name
        assert (out / phases[name]["log"]).exists()
    # the CUDA-only parts of phases that ran are listed with their reason
    for name in ("env", "kernels", "engine"):
        assert any("--device cpu" in s["reason"] for s in phases[name]["skipped"]), name
    assert report["exit_status"] == 0 and report["failed_phases"] == [] and report["device"] == "cpu"
    assert report["versions"]["torch"]


def checks_every_kernel_and_policy(report):
    phases = {p["name"]: p for p in report["phases"]}
    kernels = {c["name"].split()[0] for c in phases["kernels"]["checks"]}
    assert kernels == {"paged_decode_attention", "sparse_paged_decode_attention", "score_pages", "select_topk",
                       "write_kv", "update_minmax", "copy_blocks"}
    engine = " ".join(c["name"] for c in phases["engine"]["checks"])
    for policy in ("full", "quest", "streaming", "head_split", "flexicache", "flexicache_adaptive"):
        assert f"kvpolicy={policy} " in engine
    assert "plain forward" in engine
    moves = {r["policy"]: r["d2h_KiB"] for r in phases["engine"]["tables"]["KV policies (fp32)"]}
    assert moves["flexicache"] > 0 and moves["full"] == 0
    assert {t["name"].split()[0] for t in phases["calibration"]["targets"]} == {"TTFT", "TPOT", "E2E"}


def writes_the_markdown(out):
    md = (out / "report.md").read_text()
    assert md.startswith("# Tessera GPU check") and "**PASSED**" in md
    for name in ("env", "kernels", "engine", "bench", "calibration"):
        assert f"## {name}: " in md
    assert "| paged_decode_attention fp32 | pass |" in md
    assert "needs CUDA" in md


def test_a_crashing_phase_does_not_stop_the_kit(tmp_path):
    proc = kit(tmp_path, "--device", "cpu", "--phases", "a,b", "--fail-phase", "kernels:crash")
    assert proc.returncode == 2, proc.stdout + proc.stderr  # the kernels phase's bit
    assert "FAILED phases: kernels" in proc.stdout
    report = json.loads((tmp_path / "report.json").read_text())
    status = {p["name"]: p["status"] for p in report["phases"]}
    assert status == {"env": "passed", "kernels": "error", "engine": "passed"}
    assert report["failed_phases"] == ["kernels"] and report["exit_status"] == 2
    kernels = next(p for p in report["phases"] if p["name"] == "kernels")
    assert "SIGABRT" in kernels["reason"]
    assert "**FAILED: kernels**" in (tmp_path / "report.md").read_text()


def test_a_hanging_phase_is_killed_at_its_timeout(tmp_path):
    proc = kit(tmp_path, "--device", "cpu", "--phases", "env", "--fail-phase", "env:hang", "--budget-s", "6")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    (env,) = report["phases"]
    assert env["status"] == "timeout" and "timeout" in env["reason"]
    assert env["wall_s"] < 6 + 12  # the timeout, then SIGTERM (and SIGKILL after a grace period)


def test_usage_errors_exit_64(tmp_path):
    proc = kit(tmp_path, "--phases", "z")
    assert proc.returncode == 64 and "unknown phase" in proc.stderr


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_cuda_without_a_gpu_fails_env_and_skips_the_rest(tmp_path):
    proc = kit(tmp_path, "--device", "cuda", "--phases", "a")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    env, kernels = report["phases"]
    assert env["status"] == "failed" and "CUDA available" in env["reason"]
    assert kernels["status"] == "skipped" and kernels["reason"].startswith("env failed")
