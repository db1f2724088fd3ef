"""The Perfetto-rules check of trace.json: every rule it implements catches the trace that breaks it, and accepts
the forms Perfetto's own diff tests load (nested slices, tid 0, string times, a bare array)."""
import json

import pandas as pd
import pytest

from tessera.results.trace import trace_events, write_chrome_trace
from tessera.results.trace_check import main, to_ns, trace_problems


def x(ts, dur, pid=1, tid=1, name="step", **extra):
    return {"name": name, "ph": "X", "ts": ts, "dur": dur, "pid": pid, "tid": tid, **extra}


def problems(events, wrap=True):
    return trace_problems(json.dumps({"traceEvents": events} if wrap else events))


def test_accepts_what_perfetto_loads():
    assert problems([x(0, 10), x(2, 3), x(10, 5), {"name": "thread_name", "ph": "M", "pid": 1, "tid": 1,
                                                   "args": {"name": "iterations"}}]) == []
    assert problems([x(0, 10), x("10.5", "2")], wrap=False) == []  # bare array, numeric strings (test_string_ts_and_dur)
    assert problems([x(0, 0), x(0, 0)]) == []  # zero-length slices stack
    assert problems([{}, x(1, 1)]) == []  # an empty event is skipped


@pytest.mark.parametrize("event, fragment", [
    (x(0, 1, pid=2**32), "outside 0..2^32-1"),
    (x(-1, 1), "negative ts"),
    (x(0, -1), "negative dur"),
    ({"name": "s", "ph": "X", "ts": 0, "pid": 1, "tid": 1}, "without dur"),
    (x(0, "1x"), "not a numeric string"),
    (x(0, True), "not a number"),
    ({"ph": "X", "ts": 0, "dur": 1, "pid": 1, "tid": 1}, "has no name"),
    ({"name": "process_name", "ph": "M", "pid": 1, "args": {"name": ""}}, "non-empty args.name"),
    ({"name": "process_labels", "ph": "M", "pid": 1, "args": {"labels": "a"}}, "ignores"),
    ({"name": "i", "ph": "i", "ts": 0, "pid": 1, "tid": 1, "s": "t"}, "does not cover"),
])
def test_each_broken_rule_is_named(event, fragment):
    found = problems([event])
    assert len(found) == 1 and fragment in found[0], found


def test_partial_overlap_on_one_thread_is_caught_in_nanoseconds():
    assert "partly overlaps" in problems([x(0, 10), x(5, 10)])[0]
    assert problems([x(0, 10, tid=1), x(5, 10, tid=2)]) == []  # other thread
    assert "partly overlaps" in problems([x(0, 10, tid=0), x(5, 10, tid=1)])[0]  # tid 0 is the pid's (1) thread
    # back to back in float microseconds, overlapping once Perfetto rounds ts and dur to ns on their own
    assert to_ns(1.0006) + to_ns(1.0006) == 2002 and to_ns(2.0012) == 2001
    assert "partly overlaps" in problems([x(1.0006, 1.0006), x(2.0012, 1)])[0]


def test_text_level_rules():
    assert "is not JSON" in trace_problems('{"traceEvents":[{"name":"s","ph":"X","ts":0,"dur":1,"pid":1,'
                                           '"tid":1,"args":{"v":NaN}}]}')[0]
    assert "more digits" in trace_problems('{"traceEvents":[{"name":"s","ph":"X","ts":0.00012345678901234567,'
                                           '"dur":1,"pid":1,"tid":1}]}')[0]
    assert "does not start" in trace_problems("[]")[0]
    assert "escape" in trace_problems('{"traceEvents":[{"name":"\\ud83d\\ude00","ph":"X","ts":0,"dur":1,'
                                      '"pid":1,"tid":1}]}')[0]
    assert "another format" in trace_problems('{"meta":{},"traceEvents":[]}')[0]
    assert "traceEvents" in trace_problems('{"events":[]}')[0]


def test_writer_keeps_back_to_back_slices_back_to_back(tmp_path):
    # iteration ends computed in float seconds: rounded to ns independently they would overlap by 1 ns
    t = [1.0006e-6, 2.0012e-6, 3.0018e-6]
    batches = pd.DataFrame({"worker": [0, 0, 0], "t_s": t, "duration_s": [1.0006e-6] * 3, "prefill_tokens": [0] * 3,
                            "decode_seqs": [1] * 3, "kv_tokens_read": [1.0, float("nan"), 3.5], "preemptions": [0] * 3})
    path = write_chrome_trace(tmp_path / "trace.json", batches, worker_names={0: "worker \U0001F600"})
    assert trace_problems(path.read_text(encoding="utf-8")) == []
    slices = [e for e in trace_events(batches) if e["ph"] == "X"]
    assert [e["args"].get("kv_tokens_read") for e in slices] == [1, None, 3.5]  # NaN left out, whole float -> int
    assert main([str(path)]) == 0
    assert main([str(tmp_path / "missing.json")]) == 2
