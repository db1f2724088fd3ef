"""What every Triton kernel here needs to know about where it runs: the interpreter or a GPU.

The interpreter flag is read once at import, because @triton.jit reads it when kernels are defined.
"""
from __future__ import annotations

import os

import torch
import triton

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"


def autotune_configs(configs: list[triton.Config]) -> list[triton.Config]:
    """All configs on a GPU; only the first (the interpreter-friendly one) in the interpreter,
    whose autotuner cannot benchmark (it needs a GPU driver)."""
    return configs[:1] if INTERPRET else configs


def upcast_inputs(dtype: torch.dtype) -> bool:
    """Whether kernels convert loaded values to fp32 before arithmetic.

    The interpreter holds bf16 as raw integers, so arithmetic and tl.dot on it are silently wrong
    there: upcast everything. On a GPU keep fp16/bf16 for the tensor cores (fp32 accumulation).
    """
    return INTERPRET or dtype == torch.float32


def check_triton_device(*tensors: torch.Tensor) -> None:
    """Triton launches need CUDA tensors, or CPU tensors with the interpreter on."""
    for t in tensors:
        if t.device.type == "cpu" and not INTERPRET:
            raise RuntimeError("the Triton path got a CPU tensor: set TRITON_INTERPRET=1 before "
                               "importing tessera.kernels, or use impl='ref'")
