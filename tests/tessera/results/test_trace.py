"""The Chrome / Perfetto trace of a KV-policy run: valid trace-event JSON (ph, ts, dur, pid, tid), one slice per
iteration per worker, one per KV copy on the host link, and no two slices of one track overlapping."""
import json

import pytest

from tessera.results.trace import write_chrome_trace
from tessera.results.trace_check import trace_problems


def test_trace_is_valid_trace_event_json(frames, tmp_path):
    batches, transfers = frames
    assert len(transfers) > 0 and set(transfers["direction"]) == {"h2d", "d2h"}
    path = write_chrome_trace(tmp_path / "trace.json", batches, transfers, {0: "worker 0: Llama-3.1-8B"})
    assert trace_problems(path.read_text(encoding="utf-8")) == []  # Perfetto's importer rules (trace_check.py)
    events = json.loads(path.read_text())["traceEvents"]
    for e in events:
        assert e["ph"] in ("X", "M") and isinstance(e["name"], str)
        assert isinstance(e["pid"], int) and isinstance(e["tid"], int)
        if e["ph"] == "X":
            assert isinstance(e["ts"], (int, float)) and e["ts"] >= 0
            assert isinstance(e["dur"], (int, float)) and e["dur"] >= 0
        else:
            assert e["name"] in ("process_name", "thread_name") and e["args"]["name"]
    slices = [e for e in events if e["ph"] == "X"]
    assert sum(e["cat"] == "iteration" for e in slices) == len(batches)
    assert sum(e["cat"] == "kv_copy" for e in slices) == len(transfers)
    assert sum(e["args"]["bytes"] for e in slices if e["cat"] == "kv_copy") == pytest.approx(transfers["bytes"].sum())
    tracks: dict = {}
    for e in slices:
        tracks.setdefault((e["pid"], e["tid"]), []).append((e["ts"], e["ts"] + e["dur"]))
    assert len(tracks) == 3  # the worker's iterations, the link's H2D and D2H lanes
    for spans in tracks.values():  # complete events of one track nest or follow; here they must follow
        spans.sort()
        assert all(b[0] >= a[1] - 1e-6 for a, b in zip(spans, spans[1:]))
    named = {(e["pid"], e["tid"]) for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    assert set(tracks) <= named
