"""The kernel checks as (kernel, dtype) tasks. On a GPU each task runs in its own process, several at once
(Triton compiles on the CPU, one kernel variant at a time per process, and a CUDA fault poisons only its
own process): `python -m tessera.gpu_check.kernel_tasks KERNEL DTYPE --device cuda --out FILE.json`.
"""
from __future__ import annotations

import argparse
import json
import traceback
from dataclasses import asdict
from pathlib import Path

import torch

from tessera.gpu_check.compare import Measure
from tessera.gpu_check.kernel_cases_attention import dense_cases, sparse_cases
from tessera.gpu_check.kernel_cases_pages import (copy_blocks_cases, score_pages_cases, select_topk_cases,
                                                  update_minmax_cases, write_kv_cases)
from tessera.gpu_check.kernel_data import DTYPES

KERNELS = {"paged_decode_attention": dense_cases, "sparse_paged_decode_attention": sparse_cases,
           "score_pages": score_pages_cases, "write_kv": write_kv_cases, "update_minmax": update_minmax_cases,
           "copy_blocks": copy_blocks_cases, "select_topk": select_topk_cases}


def tasks(size: str) -> list[tuple[str, str]]:
    """(kernel, dtype) pairs, slowest first; select_topk once (its scores are fp32 whatever the pool's dtype).
    The interpreter (size "tiny") checks fp32 and bf16 only."""
    dtypes = list(DTYPES) if size == "full" else ["fp32", "bf16"]
    return [(k, d) for k in KERNELS for d in dtypes if k != "select_topk" or d == "fp32"]


def autotune_choices() -> dict[str, str]:
    """The config each autotuned kernel picked, per tuning key (what this process tuned)."""
    from tessera.kernels import paged_decode_attention, score_pages, sparse_paged_decode_attention
    out = {}
    for fn in (paged_decode_attention._paged_decode_kernel, sparse_paged_decode_attention._sparse_decode_kernel,
               score_pages._score_pages_kernel):
        for key, config in getattr(fn, "cache", {}).items():
            out[f"{getattr(fn.fn, '__name__', fn.fn)} {key}"] = str(config)
    return out


def run_task(kernel: str, dtype: str, device: str, size: str) -> list[dict]:
    try:
        with torch.no_grad():
            measures = KERNELS[kernel](device, DTYPES[dtype], size)
    except Exception as err:  # noqa: BLE001 - reported as a failed case of this kernel and dtype
        traceback.print_exc()
        measures = [_raised(kernel, dtype, err)]
    if device == "cuda":
        try:
            torch.cuda.synchronize()  # an asynchronous CUDA fault surfaces here, inside this task
        except RuntimeError as err:
            measures.append(_raised(kernel, dtype, err))
    return [asdict(m) for m in measures]


def _raised(kernel: str, dtype: str, err: Exception) -> Measure:
    return Measure(kernel, str(DTYPES[dtype]).removeprefix("torch."), "the checks raised", False, float("inf"),
                   float("inf"), f"{type(err).__name__}: {err}".splitlines()[0][:300])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("kernel", choices=sorted(KERNELS))
    p.add_argument("dtype", choices=sorted(DTYPES))
    p.add_argument("--device", default="cuda")
    p.add_argument("--size", default="full", choices=["full", "tiny"])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (the references run on the CPU)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = run_task(args.kernel, args.dtype, args.device, args.size)
    args.out.write_text(json.dumps({"measures": rows, "autotune": autotune_choices()}, default=str))
    print(f"{args.kernel} {args.dtype}: {sum(r['passed'] for r in rows)}/{len(rows)} cases passed", flush=True)


if __name__ == "__main__":
    main()
