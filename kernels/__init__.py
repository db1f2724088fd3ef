"""Triton kernels for per-head paged KV (FlexiCache layout), each with a torch reference beside it.

The runtime calls the ops through `tessera.kernels.dispatch` only: Triton on CUDA tensors, the torch
reference on CPU tensors whatever TRITON_INTERPRET says; `impl=` or `use_impl` force a path.
The memory layout (pools, block tables, MinMax pool, page lists) is documented in `layout.py`.
Nothing is re-exported here, because the ops' functions share their modules' names.
"""
