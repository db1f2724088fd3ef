"""Suite-wide test setup.

TRITON_INTERPRET must be set before any @triton.jit runs, so Triton kernels run in the CPU interpreter.
"""
import os

os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
