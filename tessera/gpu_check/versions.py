"""The oldest torch and Triton the GPU path is claimed to work with, and the check the env phase runs.

Minimums come from the APIs the code uses (docs/gpu_check.md lists them):
- torch 2.5: ``F.scaled_dot_product_attention(enable_gqa=...)`` (runtime/model.py, benchmarks/kernels.py);
- Triton 3.0: ``tl.dot(..., input_precision=...)`` (kernels/_decode_common.py, kernels/score_pages.py),
  the first release with that argument (Triton 2.x has ``allow_tf32``). torch 2.5 ships Triton 3.1,
  so in practice the pair is torch >= 2.5 with the Triton it pins.
Python >= 3.11 is pyproject's requires-python. These minimums were read, not run: see the docs.
"""
from __future__ import annotations

import re
import sys

MIN_PYTHON = (3, 11)
MIN_TORCH = (2, 5)
MIN_TRITON = (3, 0)
WHY = {"torch": "F.scaled_dot_product_attention(enable_gqa=...) needs torch >= 2.5",
       "triton": "tl.dot(input_precision=...) needs Triton >= 3.0",
       "python": "pyproject.toml requires Python >= 3.11"}


def parse_version(text: str) -> tuple[int, ...]:
    """Leading numeric release of a version string: '2.11.0+cu128' -> (2, 11, 0), '3.6.0rc1' -> (3, 6, 0)."""
    m = re.match(r"\s*v?(\d+(?:\.\d+)*)", text)
    if not m:
        raise ValueError(f"not a version: {text!r}")
    return tuple(int(p) for p in m.group(1).split("."))


def too_old(found: tuple[int, ...], minimum: tuple[int, ...]) -> bool:
    return found[:len(minimum)] < minimum


def version_problems(python: str, torch: str, triton: str | None) -> list[str]:
    """One clear message per component older than its minimum (empty: all supported)."""
    problems = []
    for name, found, minimum in (("python", python, MIN_PYTHON), ("torch", torch, MIN_TORCH),
                                 ("triton", triton, MIN_TRITON)):
        if found is None:
            problems.append(f"{name} is not installed: {WHY[name]}")
        elif too_old(parse_version(found), minimum):
            problems.append(f"{name} {found} is older than the supported minimum "
                            f"{'.'.join(map(str, minimum))}: {WHY[name]}")
    return problems


def python_version() -> str:
    return ".".join(map(str, sys.version_info[:3]))
