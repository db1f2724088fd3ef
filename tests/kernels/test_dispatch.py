"""The dispatcher: which path runs for which tensors, and how tests force one."""
import pytest
import torch

from tessera.kernels import dispatch


def test_cpu_tensors_use_the_reference_even_with_the_interpreter_on():
    import os
    assert os.environ.get("TRITON_INTERPRET") == "1"
    assert dispatch.resolve_impl(None, torch.zeros(1)) == "ref"
    assert dispatch.resolve_impl("auto", torch.zeros(1)) == "ref"


def test_explicit_and_scoped_choice():
    assert dispatch.resolve_impl("triton", torch.zeros(1)) == "triton"
    with dispatch.use_impl("triton"):
        assert dispatch.resolve_impl(None, torch.zeros(1)) == "triton"
        assert dispatch.resolve_impl("ref", torch.zeros(1)) == "ref"
    assert dispatch.resolve_impl(None, torch.zeros(1)) == "ref"
    with pytest.raises(ValueError, match="impl must be"):
        dispatch.resolve_impl("cuda", torch.zeros(1))


def test_forced_triton_really_runs_the_kernel(monkeypatch):
    from tessera.kernels import write_kv as module
    calls = []
    monkeypatch.setattr(module, "write_kv", lambda *a: calls.append("triton"))
    monkeypatch.setattr(module, "write_kv_ref", lambda *a: calls.append("ref"))
    args = (torch.zeros(2, 1, 16, 64), torch.zeros(1, 1, 64), torch.zeros(1, 1, 64), torch.zeros(1, 1, dtype=torch.int64))
    dispatch.write_kv(*args)
    with dispatch.use_impl("triton"):
        dispatch.write_kv(*args)
    assert calls == ["ref", "triton"]
