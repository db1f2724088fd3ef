"""One kernel result against its reference: a Measure with the worst error and the worst error over the
tolerance (atol + rtol * |expected|, as torch.testing.assert_close); inf and NaN must sit where the
reference has them."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class Measure:
    kernel: str
    dtype: str
    case: str
    passed: bool
    max_abs_err: float = 0.0
    worst_ratio: float = 0.0  # max |actual - expected| / (atol + rtol |expected|); <= 1 passes
    detail: str = ""


def compare(kernel: str, dtype: torch.dtype, case: str, actual: torch.Tensor, expected: torch.Tensor,
            atol: float = 0.0, rtol: float = 0.0, detail: str = "") -> Measure:
    name = str(dtype).removeprefix("torch.")
    a, e = actual.detach().cpu().double(), expected.detach().cpu().double()
    if a.shape != e.shape:
        return Measure(kernel, name, case, False, math.inf, math.inf, f"shape {list(a.shape)} != {list(e.shape)}")
    finite = torch.isfinite(e)
    same_special = torch.equal(a[~finite].nan_to_num(0.0, 1.0, -1.0), e[~finite].nan_to_num(0.0, 1.0, -1.0)) and \
        torch.equal(torch.isnan(a[~finite]), torch.isnan(e[~finite]))
    err = (a[finite] - e[finite]).abs()
    bad = ~torch.isfinite(a[finite])
    max_err = math.inf if bool(bad.any()) else float(err.max()) if err.numel() else 0.0
    if bool(bad.any()):
        ratio = math.inf
    elif err.numel() == 0:
        ratio = 0.0
    elif atol == 0.0 and rtol == 0.0:
        ratio = 0.0 if max_err == 0.0 else math.inf
    else:
        ratio = float((err / (atol + rtol * e[finite].abs())).max())
    passed = same_special and ratio <= 1.0
    if not same_special:
        detail = (detail + "; " if detail else "") + "inf/NaN positions differ from the reference"
    return Measure(kernel, name, case, passed, max_err, ratio, detail)


def flag(kernel: str, dtype: torch.dtype, case: str, ok: bool, detail: str = "") -> Measure:
    """A yes/no property (guards intact, an error raised, ...) as a Measure."""
    return Measure(kernel, str(dtype).removeprefix("torch."), case, bool(ok), 0.0, 0.0 if ok else math.inf, detail)
