"""One phase in its own process: `python -m tessera.gpu_check.phase_main NAME --device D --out DIR`.

Writes DIR/phases/NAME.json (updated as it goes); an exception is recorded as status "error". A hidden
`--fail MODE` injects a failure for the kit's own tests: error (raise), check (a failed check),
crash (abort, like a CUDA crash) or hang (sleep past the timeout).
"""
from __future__ import annotations

import argparse
import importlib
import os
import time
import traceback
from pathlib import Path

from tessera.gpu_check.phases import BY_NAME
from tessera.gpu_check.result import PhaseResult, Recorder

FAIL_MODES = ("error", "check", "crash", "hang")


def inject(mode: str, rec: Recorder) -> None:
    print(f"injecting a failure: {mode}", flush=True)
    if mode == "error":
        raise RuntimeError("injected failure (--fail-phase)")
    if mode == "check":
        rec.check("injected failure (--fail-phase)", False)
    elif mode == "crash":
        os.abort()
    elif mode == "hang":
        time.sleep(10**6)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("name", choices=sorted(BY_NAME))
    p.add_argument("--device", choices=["cuda", "cpu"], required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--fail", choices=FAIL_MODES, default=None)
    args = p.parse_args(argv)
    (args.out / "phases").mkdir(parents=True, exist_ok=True)
    rec = Recorder(PhaseResult(args.name), args.out / "phases" / f"{args.name}.json", args.out)
    start = time.perf_counter()
    try:
        if args.fail:
            inject(args.fail, rec)
        importlib.import_module(BY_NAME[args.name].module).run(rec, args.device)
        rec.result.conclude()
        code = 0
    except Exception as err:  # noqa: BLE001 - any error ends the phase, never the kit
        traceback.print_exc()
        rec.result.status = "error"
        rec.result.reason = f"{type(err).__name__}: {err}".splitlines()[0][:300]
        code = 1
    rec.result.wall_s = time.perf_counter() - start
    rec.save()
    print(f"phase {args.name}: {rec.result.status} {rec.result.reason}".rstrip(), flush=True)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
