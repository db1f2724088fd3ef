"""The kit's command line: `python -m tessera.gpu_check --out DIR [--device cuda|cpu] [--phases a,b,c,d]`.

Runs the phases (tessera/gpu_check/phases), writes DIR/report.json, DIR/report.md, DIR/logs/<phase>.log,
and exits with the OR of the failed phases' bits (env 1, kernels 2, engine 4, bench 8, calibration 16),
0 when none failed; 64 for a usage error. docs/gpu_check.md explains every phase.
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

from tessera.gpu_check.phase_main import FAIL_MODES
from tessera.gpu_check.phases import PHASES, select
from tessera.gpu_check.report import exit_status, failed_names, write_reports
from tessera.gpu_check.runner import run_all

USAGE_ERROR = 64  # not 2 (argparse's): 2 is the kernels phase's bit


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message}\n")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    letters = ", ".join(f"{p.letter}={p.name}" for p in PHASES if p.letter)
    p = _Parser(prog="python -m tessera.gpu_check",
                description="Proves the Triton kernels, the CUDA runtime path and the calibration on a CUDA machine, "
                            "offline, within a time budget (docs/gpu_check.md).")
    p.add_argument("--out", type=Path, required=True, help="output folder (created)")
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda",
                   help="cuda: the real check; cpu: the CI dry run (CUDA-only parts listed as skipped)")
    p.add_argument("--phases", default=None, help=f"comma list of names or letters ({letters}); env always runs")
    p.add_argument("--budget-s", type=float, default=480.0, help="wall-clock budget for all phases")
    # For the kit's own tests: make PHASE fail (MODE: error, check, crash, hang). Repeatable.
    p.add_argument("--fail-phase", action="append", default=[], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    try:
        args.selected = select(args.phases)
    except ValueError as err:
        p.error(str(err))
    args.fail = {}
    for item in args.fail_phase:
        name, _, mode = item.partition(":")
        mode = mode or "error"
        if name not in {ph.name for ph in PHASES} or mode not in FAIL_MODES:
            p.error(f"--fail-phase {item!r}: use PHASE[:{'|'.join(FAIL_MODES)}]")
        args.fail[name] = mode
    if args.budget_s <= 0:
        p.error("--budget-s must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    print(f"Tessera GPU check on {args.device}: phases {', '.join(p.name for p in args.selected)}; "
          f"budget {args.budget_s:.0f} s; output {args.out}", flush=True)
    start = time.perf_counter()
    results = run_all(args.selected, args.device, args.out, args.budget_s, args.fail,
                      progress=lambda line: print(line, flush=True))
    header = {"kit": "tessera.gpu_check", "device": args.device, "budget_s": args.budget_s,
              "wall_s": time.perf_counter() - start, "started_utc": started,
              "command": " ".join(["python -m tessera.gpu_check"] + (sys.argv[1:] if argv is None else argv)),
              "phases_selected": [p.name for p in args.selected],
              "versions": next((r.info.get("versions") for r in results if r.name == "env"), None)}
    json_path, md_path = write_reports(args.out, results, header)
    code = exit_status(results)
    failed = failed_names(results)
    print(f"wrote {json_path} and {md_path}")
    if failed:
        print(f"FAILED phases: {', '.join(failed)} (exit status {code}); logs in {args.out / 'logs'}")
    else:
        print("all phases passed or were skipped: " + json.dumps({r.name: r.status for r in results}))
    return code


if __name__ == "__main__":
    raise SystemExit(main())
