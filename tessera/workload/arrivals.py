"""Arrival processes for synthetic workloads: Poisson, gamma (bursty or smooth), or all at once.

Each returns sorted arrival times in seconds with the first request at 0 s, like a replayed trace.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from tessera.workload.checks import real_number

# Beyond these the gap arithmetic (1 / rate, 1 / cv^2) overflows or underflows float64.
MIN_RATE, MAX_RATE = 1e-9, 1e9  # requests/s
MIN_CV, MAX_CV = 1e-3, 1e3  # besides cv = 0
MAX_SPEEDUP = 1e6  # speedup in [1 / MAX_SPEEDUP, MAX_SPEEDUP]
from tessera.workload.trace_files import TraceError, read_trace_file


@runtime_checkable
class ArrivalProcess(Protocol):
    """Draws n sorted arrival times (seconds, float64, first at 0)."""

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray: ...


@dataclass(frozen=True, slots=True)
class GammaArrivals:
    """Gamma-distributed gaps with mean 1/rate and coefficient of variation cv.

    cv = 1 is Poisson, cv > 1 is burstier, cv < 1 smoother, cv = 0 evenly spaced.
    """

    rate: float  # requests per second
    cv: float = 1.0

    def __post_init__(self) -> None:
        real_number("rate", self.rate, at_least=MIN_RATE, at_most=MAX_RATE, unit=" requests/s")
        cv = real_number("cv", self.cv, at_least=0, at_most=MAX_CV, unit=" (1 is Poisson)")
        if 0 < cv < MIN_CV:
            raise ValueError(f"cv must be 0 (evenly spaced) or >= {MIN_CV:g}; 1 is Poisson (got {self.cv!r})")

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        num_gaps = max(n - 1, 0)
        if self.cv == 0:
            gaps = np.full(num_gaps, 1.0 / self.rate)
        else:
            shape = 1.0 / self.cv**2
            gaps = rng.gamma(shape, 1.0 / (self.rate * shape), num_gaps)
        return np.concatenate(([0.0], np.cumsum(gaps)))[:n]


def poisson(rate: float) -> GammaArrivals:
    """Poisson arrivals: exponential gaps with mean 1/rate."""
    return GammaArrivals(rate, 1.0)


def gamma(rate: float, cv: float) -> GammaArrivals:
    return GammaArrivals(rate, cv)


@dataclass(frozen=True, slots=True)
class BurstArrivals:
    """Every request at t = 0: an offline batch."""

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.zeros(n)


def burst() -> BurstArrivals:
    return BurstArrivals()


@dataclass(frozen=True, slots=True)
class TraceArrivals:
    """The first n arrival times of a recorded trace, divided by speedup (lengths not used)."""

    name: str
    speedup: float = 1.0

    def __post_init__(self) -> None:
        real_number("speedup", self.speedup, at_least=1 / MAX_SPEEDUP, at_most=MAX_SPEEDUP,
                    unit=" (1.0 replays the trace's times)")

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        table = read_trace_file(self.name)
        if table.arrival_s is None:
            raise TraceError(f"{table.path}: a length table has no arrival times; use a trace "
                             f"with timestamps (azure_code, azure_conv, mooncake_*)")
        if n > len(table):
            raise ValueError(f"trace {self.name} has {len(table)} arrivals, fewer than the "
                             f"{n} requested; lower num_requests or use Poisson/gamma arrivals")
        return table.arrival_s[:n] / self.speedup


def trace_arrivals(name: str | Path, speedup: float = 1.0) -> TraceArrivals:
    return TraceArrivals(str(name), speedup)
