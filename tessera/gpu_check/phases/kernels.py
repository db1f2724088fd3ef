"""Phase a, kernels: every Triton kernel in every dtype (fp32, fp16, bf16) on CUDA tensors, compiled with
autotuning on, against its torch reference; one check per (kernel, dtype) with its max error.

On a GPU the (kernel, dtype) tasks run as parallel subprocesses (TESSERA_GPU_CHECK_JOBS, default
min(8, cores)); under --device cpu a tiny subset runs in this process in the Triton interpreter.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

from tessera.gpu_check.kernel_tasks import run_task, tasks
from tessera.gpu_check.result import Recorder


def jobs() -> int:
    return max(1, int(os.environ.get("TESSERA_GPU_CHECK_JOBS", min(8, os.cpu_count() or 1))))


def run_parallel(pairs: list[tuple[str, str]], out: Path, on_done, device: str = "cuda",
                 size: str = "full") -> dict[str, str]:
    """Each (kernel, dtype) in its own process, jobs() at a time; on_done(pair, measures) as each ends."""
    task_dir, log_dir = out / "phases" / "kernels", out / "logs" / "kernels"
    task_dir.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    pending, running, autotune = list(pairs), {}, {}
    while pending or running:
        while pending and len(running) < jobs():
            kernel, dtype = pair = pending.pop(0)
            result = task_dir / f"{kernel}_{dtype}.json"
            result.unlink(missing_ok=True)  # a previous run's file must not stand in for a crashed task
            log = open(log_dir / f"{kernel}_{dtype}.log", "w")
            cmd = [sys.executable, "-m", "tessera.gpu_check.kernel_tasks", kernel, dtype, "--device", device,
                   "--size", size, "--out", str(result), "--threads", str(max(1, (os.cpu_count() or 1) // jobs()))]
            running[pair] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), result, log)
        time.sleep(0.2)
        for pair, (proc, result, log) in list(running.items()):
            code = proc.poll()
            if code is None:
                continue
            log.close()
            del running[pair]
            if result.exists():
                data = json.loads(result.read_text())
                autotune.update(data["autotune"])
                on_done(pair, data["measures"])
            else:
                on_done(pair, [{"kernel": pair[0], "dtype": pair[1], "case": "task process", "passed": False,
                                "max_abs_err": math.inf, "worst_ratio": math.inf,
                                "detail": f"died with exit status {code}; see logs/kernels/{pair[0]}_{pair[1]}.log"}])
    return autotune


def record(rec: Recorder, pair: tuple[str, str], measures: list[dict], summary: list[dict]) -> None:
    kernel, dtype = pair
    bad = [m for m in measures if not m["passed"]]
    max_err = max((m["max_abs_err"] for m in measures), default=0.0)
    worst = max((m["worst_ratio"] for m in measures), default=0.0)
    rec.check(f"{kernel} {dtype}", not bad and measures,
              f"{len(measures) - len(bad)}/{len(measures)} cases, max |err| {max_err:.2e}, worst err/tol {worst:.2f}",
              "; ".join(f"{m['case']}: {m['detail'] or 'err/tol %.3g' % m['worst_ratio']}" for m in bad[:3]))
    summary.append({"kernel": kernel, "dtype": dtype, "cases": len(measures), "failed": len(bad),
                    "max_abs_err": max_err, "worst_err_over_tol": worst})
    rec.table("max error vs the torch reference, per kernel and dtype", summary)
    cases = rec.result.info.get("cases", []) + measures
    rec.info("cases", cases)
    failing = [m for m in cases if not m["passed"]]
    if failing:
        rec.table("failing cases", [{k: m[k] for k in ("kernel", "dtype", "case", "worst_ratio", "detail")}
                                    for m in failing])


def run(rec: Recorder, device: str) -> None:
    summary: list[dict] = []
    if device == "cpu":
        rec.skip("compiled kernels with autotuning, fp16, the full case set",
                 "--device cpu: a few small cases per kernel in the Triton interpreter (fp32, bf16)")
        for kernel, dtype in tasks("tiny"):
            record(rec, (kernel, dtype), run_task(kernel, dtype, "cpu", "tiny"), summary)
        return
    from tessera.kernels._decode_common import DECODE_AUTOTUNE_CONFIGS
    from tessera.kernels._triton_utils import INTERPRET
    rec.check("compiled for the GPU with autotuning on", not INTERPRET and len(DECODE_AUTOTUNE_CONFIGS) > 1,
              f"TRITON_INTERPRET off, {len(DECODE_AUTOTUNE_CONFIGS)} decode configs")
    rec.info("jobs", jobs())
    autotune = run_parallel(tasks("full"), rec.out_dir, lambda pair, m: record(rec, pair, m, summary))
    rec.info("autotune choices", autotune)
    rec.table("autotuner's choices (kernel, key -> config)", [{"kernel and key": k, "config": v}
                                                             for k, v in sorted(autotune.items())])
