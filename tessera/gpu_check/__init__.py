"""The GPU validation kit: one offline command that proves the Triton kernels, the CUDA runtime path and
the calibration on a CUDA machine (`python -m tessera.gpu_check --out DIR`); docs/gpu_check.md."""
