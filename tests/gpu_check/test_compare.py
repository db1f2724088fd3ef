"""Kernel results against references: error over tolerance, and inf/NaN where the reference has them."""
import math

import torch

from tessera.gpu_check.compare import compare, flag


def test_ratio_against_the_tolerance():
    m = compare("k", torch.float32, "c", torch.tensor([1.0, 2.05]), torch.tensor([1.0, 2.0]), atol=0.1, rtol=0.0)
    assert m.passed and math.isclose(m.max_abs_err, 0.05, rel_tol=1e-5)
    assert math.isclose(m.worst_ratio, 0.5, rel_tol=1e-5)
    assert not compare("k", torch.float32, "c", torch.tensor([2.3]), torch.tensor([2.0]), 0.1, 0.0).passed


def test_specials_must_match():
    inf = float("inf")
    ok = compare("k", torch.float32, "c", torch.tensor([inf, -inf, 1.0]), torch.tensor([inf, -inf, 1.0]))
    assert ok.passed and ok.worst_ratio == 0.0
    assert not compare("k", torch.float32, "c", torch.tensor([-inf]), torch.tensor([inf])).passed
    assert not compare("k", torch.float32, "c", torch.tensor([float("nan")]), torch.tensor([1.0]), 1.0, 1.0).passed
    both_nan = compare("k", torch.float32, "c", torch.tensor([float("nan")]), torch.tensor([float("nan")]))
    assert both_nan.passed  # untouched NaN-filled blocks stay NaN in both


def test_exact_comparison_and_shapes():
    assert not compare("k", torch.bfloat16, "c", torch.tensor([1.0]), torch.tensor([1.0001])).passed
    bad = compare("k", torch.float16, "c", torch.zeros(2), torch.zeros(3))
    assert not bad.passed and "shape" in bad.detail and bad.dtype == "float16"
    assert flag("k", torch.float32, "c", True).passed and not flag("k", torch.float32, "c", False).passed
