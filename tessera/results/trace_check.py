"""Checks a trace-event JSON file against the rules of Perfetto's JSON importer, read from its source, so a trace
that passes loads in ui.perfetto.dev with no event dropped, moved to an overflow track or misread.

Rules from google/perfetto at ec5d16b1 (identical at release v58.2), src/trace_processor/: importers/json/
json_trace_tokenizer.cc (detection, fields, ts/dur to ns), importers/json/json_trace_parser.cc (phases),
util/json_parser.h (numbers, escapes), importers/common/slice_tracker.cc (nesting); see docs/outputs.md.
Covers the events Tessera writes (complete "X" slices, "M" names); any other phase is reported as unchecked.
Run: python -m tessera.results.trace_check trace.json
"""
from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

UINT32_MAX = 2**32 - 1
MAX_DEPTH = 512  # slice_tracker.h kMaxDepth: deeper slices are dropped
METADATA_NAMES = ("process_name", "thread_name", "process_sort_index", "thread_sort_index")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abAB][0-9a-fA-F]{2}|\\u[dD][c-fC-F][0-9a-fA-F]{2}")


class _Bad(ValueError):
    pass


def _float(token: str) -> float:
    """json_parser.h StringToDouble sums the fraction over a uint64 divisor that wraps past 19 digits, and the
    integer part in an int64: longer numbers are read as other values."""
    mantissa = re.split(r"[eE]", token)[0].lstrip("-")
    whole, _, fraction = mantissa.partition(".")
    if len(fraction) > 19 or len(whole) > 18:
        raise _Bad(f"number {token} has more digits than Perfetto's parser reads correctly (<= 18 + 19)")
    value = float(token)
    if not math.isfinite(value):
        raise _Bad(f"number {token} overflows to infinity")
    return value


def _constant(name: str):
    raise _Bad(f"{name} is not JSON: Perfetto fails the whole trace (or, inside args, drops or loops)")


def to_ns(value) -> int:
    """json_trace_tokenizer.cc CoerceToTs: microseconds (int, float or numeric string) to whole nanoseconds;
    a non-integral double is rounded half away from zero."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise _Bad(f"time {value!r} is not a number")
    if isinstance(value, str):
        try:
            value = json.loads(value, parse_float=_float)
        except json.JSONDecodeError:
            raise _Bad(f"time {value!r} is not a numeric string") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Bad(f"time {value!r} is not a numeric string")
    if isinstance(value, int):
        return value * 1000
    if value == math.trunc(value):
        return int(value) * 1000
    scaled = value * 1000.0
    return int(math.floor(abs(scaled) + 0.5)) * (1 if scaled >= 0 else -1)


def _id(event: dict, key: str) -> int:
    value = event.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Bad(f"{key} {value!r} is not a number (strings are read as names: not used here)")
    if not 0 <= value <= UINT32_MAX:
        raise _Bad(f"{key} {value} is outside 0..2^32-1 (Perfetto turns it into 0)")
    return int(value)


def _check_args(args) -> None:
    if not isinstance(args, dict):
        raise _Bad("args is not an object (ignored)")


def _event_problem(event, tracks: dict) -> str | None:
    if not isinstance(event, dict):
        return "is not an object (the whole trace fails)"
    if not event:
        return None  # {} is skipped
    ph = event.get("ph")
    if not isinstance(ph, str) or not ph:
        return "has no string ph (dropped)"
    try:
        pid = _id(event, "pid")
        tid = _id(event, "tid") if "tid" in event else 0
        tid = pid if tid == 0 and pid else tid  # a missing or 0 tid is the pid's main thread
        if "args" in event:
            _check_args(event["args"])
        if ph[0] == "X":
            name = event.get("name")
            if not isinstance(name, str) or not name:
                return "has no name (shown as [No name])"
            if "ts" not in event:
                return "has no ts (dropped)"
            if "dur" not in event:
                return "is a complete event without dur (dropped)"
            ts, dur = to_ns(event["ts"]), to_ns(event["dur"])
            if ts < 0:
                return f"has negative ts {event['ts']} (dropped)"
            if dur < 0:
                return f"has negative dur {event['dur']} (v58.2 drops it; the v52 UI build keeps a negative slice)"
            tracks.setdefault((pid, tid), []).append((ts, dur))
            return None
        if ph[0] == "M":
            name = event.get("name")
            if name not in METADATA_NAMES:
                return f"is metadata {name!r}, which Perfetto ignores"
            args = event.get("args", {})
            if name.endswith("_name") and not (isinstance(args.get("name"), str) and args["name"]):
                return f"is {name} without a non-empty args.name (dropped)"
            if name.endswith("_sort_index") and (isinstance(args.get("sort_index"), bool)
                                                  or not isinstance(args.get("sort_index"), (int, float))):
                return f"is {name} without a numeric args.sort_index (dropped)"
            return None
        return f"has phase {ph!r}, which this check does not cover"
    except _Bad as err:
        return str(err)


def _nesting_problems(tracks: dict) -> list[str]:
    """slice_tracker.cc: on one thread a complete event must nest inside the open one or start at or after its
    end ([ts, ts + dur) half-open, in ns); a partial overlap goes to an overflow track (v57+) or is dropped."""
    problems = []
    for (pid, tid), spans in tracks.items():
        spans.sort(key=lambda s: (s[0], -s[1]))  # the sorter: equal ts, longer first
        stack: list[int] = []  # open slices' ends
        for ts, dur in spans:
            while stack and ts >= stack[-1]:
                stack.pop()
            if stack and ts + dur > stack[-1]:
                problems.append(f"pid {pid} tid {tid}: slice [{ts}, {ts + dur}) ns partly overlaps one ending at "
                                f"{stack[-1]} ns (moved to an overflow track or dropped)")
                continue
            stack.append(ts + dur)
            if len(stack) > MAX_DEPTH:
                problems.append(f"pid {pid} tid {tid}: nesting deeper than {MAX_DEPTH} (dropped)")
                stack.pop()
    return problems


def trace_problems(text: str, limit: int = 20) -> list[str]:
    """Every rule the trace breaks (at most `limit` event problems listed); [] when Perfetto reads it as written."""
    head = re.sub(r"\s", "", text[:128])
    if not (head.startswith('{"') or head.startswith('[{"')):
        return ['the file does not start with {" or [{" (Perfetto does not recognise it as JSON)']
    if _SURROGATE_ESCAPE.search(text):
        return ["a \\uD800-\\uDFFF escape (write UTF-8: json.dumps(ensure_ascii=False)); Perfetto rejects it"]
    try:
        payload = json.loads(text, parse_float=_float, parse_constant=_constant)
    except _Bad as err:
        return [str(err)]
    except json.JSONDecodeError as err:
        return [f"not valid JSON: {err}"]
    if isinstance(payload, dict):
        if next(iter(payload), None) in ("meta", "libs", "perfetto_manifest"):
            return ["the first key makes Perfetto read it as another format (Gecko or a manifest)"]
        events = payload.get("traceEvents")
        if not isinstance(events, list):
            return ["traceEvents is missing or not an array"]
        if "displayTimeUnit" in payload and not isinstance(payload["displayTimeUnit"], str):
            return ["displayTimeUnit is not a string (the whole trace fails)"]
    else:
        events = payload
    problems, tracks = [], {}
    for i, event in enumerate(events):
        problem = _event_problem(event, tracks)
        if problem is not None:
            problems.append(f"event {i} {problem}")
    return problems[:limit] + _nesting_problems(tracks)[:limit]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m tessera.results.trace_check trace.json", file=sys.stderr)
        return 2
    path = Path(args[0])
    if not path.is_file():
        print(f"{path}: no such file", file=sys.stderr)
        return 2
    problems = trace_problems(path.read_text(encoding="utf-8"))
    for p in problems:
        print(f"{path}: {p}")
    if not problems:
        print(f"{path}: OK (Perfetto's JSON importer rules, perfetto@ec5d16b1)")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
