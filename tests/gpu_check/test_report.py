"""Phase results, their strict JSON and the Markdown report; the exit status is the OR of failed phases' bits."""
import json
import math

from tessera.gpu_check.report import exit_status, markdown, write_reports
from tessera.gpu_check.result import PhaseResult, Recorder, Target, dumps


def result(name, status, **kw):
    return PhaseResult(name, status=status, **kw)


def test_exit_status_names_the_failed_phases():
    results = [result("env", "passed"), result("kernels", "failed"), result("engine", "passed"),
               result("bench", "timeout"), result("calibration", "skipped")]
    assert exit_status(results) == 2 | 8
    assert exit_status([result("env", "passed"), result("bench", "skipped")]) == 0
    assert exit_status([result("env", "error")]) == 1


def test_conclude_from_checks(tmp_path):
    rec = Recorder(PhaseResult("engine"), tmp_path / "engine.json", tmp_path)
    rec.check("a", True)
    rec.result.conclude()
    assert rec.result.status == "passed"
    rec.check("b", False, "1.5", "why")
    rec.result.conclude()
    assert rec.result.status == "failed" and rec.result.reason == "b"
    nothing = Recorder(PhaseResult("bench"), tmp_path / "bench.json", tmp_path)
    nothing.skip("bench", "needs CUDA")
    nothing.result.conclude()
    assert nothing.result.status == "skipped" and nothing.result.reason == "needs CUDA"


def test_saved_json_is_strict_and_round_trips(tmp_path):
    rec = Recorder(PhaseResult("kernels"), tmp_path / "kernels.json", tmp_path)
    rec.target("speed-up", math.inf, goal=5, unit="x")
    rec.target("syncs", 0.5, goal=0, lower_is_better=True)
    rec.table("t", [{"err": math.nan, "n": 3}])
    text = (tmp_path / "kernels.json").read_text()
    assert "Infinity" not in text and "NaN" not in text
    data = json.loads(text)
    assert data["targets"][0]["value"] == "inf" and data["targets"][0]["met"] is True
    assert data["targets"][1]["met"] is False
    back = PhaseResult.load(tmp_path / "kernels.json")
    assert back.targets[0].value == math.inf and back.tables["t"][0]["n"] == 3


def test_target_direction():
    assert Target("x", 0.8, 0.7).met and not Target("x", 0.6, 0.7).met
    assert Target("x", 0.0, 0.0, lower_is_better=True).met and Target("x", 1.0).met is None


def test_markdown_and_json_files(tmp_path):
    failed = result("kernels", "failed", reason="write_kv bf16", wall_s=3.0, timeout_s=10.0)
    results = [result("env", "passed", wall_s=1.0), failed, result("bench", "skipped", reason="needs CUDA")]
    header = {"device": "cpu", "budget_s": 480.0, "wall_s": 4.0, "started_utc": "now", "versions": {"torch": "2.13"}}
    json_path, md_path = write_reports(tmp_path, results, header)
    report = json.loads(json_path.read_text())
    assert report["failed_phases"] == ["kernels"] and report["exit_status"] == 2
    md = md_path.read_text()
    assert "**FAILED: kernels**" in md and "| kernels | failed | 3 | 10 | write_kv bf16 |" in md
    assert md == markdown(results, header)


def test_dumps_plain_numbers():
    assert json.loads(dumps({"a": float("-inf"), "b": (1, 2.5)})) == {"a": "-inf", "b": [1, 2.5]}
