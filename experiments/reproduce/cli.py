"""`tessera-reproduce [--quick] [--out DIR] [--only NAME ...]`: run the paper-figure experiments, write one report.

Each experiment runs as a `tessera` subprocess; a failure is reported and the others still run (exit status 1).
"""
from __future__ import annotations

import argparse
import datetime as dt
import shlex
import sys
import time
from pathlib import Path
from typing import TextIO

from tessera.experiments.reproduce.catalog import BY_NAME, EXPERIMENTS
from tessera.experiments.reproduce.headlines import read_headlines
from tessera.experiments.reproduce.machine import describe_machine
from tessera.experiments.reproduce.progress import Progress, duration
from tessera.experiments.reproduce.report import build_report, write_report
from tessera.experiments.reproduce.runner import INTERRUPTED, RunResult, run_experiment


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tessera-reproduce", description=__doc__.splitlines()[0].split(": ", 1)[1])
    parser.add_argument("--quick", action="store_true",
                        help="smoke-sized runs (params.quick=true, under a minute in all); not comparable with the "
                        "papers")
    parser.add_argument("--out", type=Path, help="report folder (default outputs/reproduce/<date>_<time>)")
    parser.add_argument("--only", nargs="+", metavar="NAME", choices=list(BY_NAME),
                        help=f"run only these experiments, of: {', '.join(BY_NAME)}")
    return parser.parse_args(argv)


def reproduce(names: list[str], out: Path, quick: bool, invocation: str,
              extra_overrides: dict[str, list[str]] | None = None, stream: TextIO | None = None,
              tick_s: float = 60) -> tuple[list[RunResult], Path]:
    """Run the named experiments in catalog order into out/<name>, write out/report.md and .html.

    extra_overrides: more `tessera` overrides per experiment name (tests use it to make one fail)."""
    stream = stream or sys.stdout
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    machine = describe_machine()
    plan = [e for e in EXPERIMENTS if e.name in names]
    progress = Progress(plan, quick, stream)
    results, headlines = [], {}
    for i, experiment in enumerate(plan):
        progress.starting(i)
        result = run_experiment(experiment, out, quick, (extra_overrides or {}).get(experiment.name, []),
                                on_tick=lambda elapsed, i=i: progress.running(i, elapsed), tick_s=tick_s)
        progress.finished(i, result.status, result.seconds)
        results.append(result)
        if result.ok:
            try:
                headlines[experiment.name] = read_headlines(experiment.name, result.run_dir)
            except (OSError, KeyError, ValueError, AttributeError) as err:
                headlines[experiment.name] = f"{type(err).__name__}: {err}"
        if result.returncode == INTERRUPTED:
            break
    blocks = build_report(results, headlines, machine, quick, time.monotonic() - progress.started, invocation)
    md, _ = write_report(blocks, out)
    print(f"report: {md} (and report.html); total {duration(time.monotonic() - progress.started)}", file=stream)
    return results, md


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    out = args.out or Path("outputs/reproduce") / dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    invocation = shlex.join(["tessera-reproduce", *(sys.argv[1:] if argv is None else argv)])
    results, _ = reproduce(args.only or list(BY_NAME), out, args.quick, invocation)
    failed = [r.experiment.name for r in results if not r.ok]
    if failed:
        print(f"tessera-reproduce: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
