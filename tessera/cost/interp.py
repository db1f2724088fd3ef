"""Piecewise-linear lookup tables for the cost models: a bisect and two multiplies per call.

Beyond the last point a table scales proportionally (y_last * x / x_last); below the first it clamps.
"""
from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable


class PiecewiseLinear:
    """y(x) by linear interpolation over sorted points; duplicate x values are averaged."""

    __slots__ = ("xs", "ys", "_x_last", "_y_last")

    def __init__(self, points: Iterable[tuple[float, float]]):
        sums: dict[float, list[float]] = {}
        for x, y in points:
            sums.setdefault(float(x), []).append(float(y))
        if not sums:
            raise ValueError("PiecewiseLinear needs at least one (x, y) point")
        self.xs = sorted(sums)
        self.ys = [sum(sums[x]) / len(sums[x]) for x in self.xs]
        if self.xs[-1] <= 0:
            raise ValueError(f"PiecewiseLinear needs a positive largest x (got {self.xs[-1]})")
        self._x_last = self.xs[-1]
        self._y_last = self.ys[-1]

    def __call__(self, x: float) -> float:
        if x >= self._x_last:
            return self._y_last * x / self._x_last
        i = bisect_right(self.xs, x)
        if i == 0:
            return self.ys[0]
        x0, x1 = self.xs[i - 1], self.xs[i]
        y0 = self.ys[i - 1]
        return y0 + (self.ys[i] - y0) * (x - x0) / (x1 - x0)

    def __len__(self) -> int:
        return len(self.xs)
