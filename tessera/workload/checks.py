"""Checks for the plain values of a workload spec: bounded whole numbers and finite real numbers.

Each raises ValueError naming the key, the value and what is allowed, so a bad spec value reads as one line.
"""
from __future__ import annotations

import math
import numbers

# The most tokens a request may have in its prompt or its output: far above any model's context, far
# below where token arithmetic (blocks, bytes, int64 counters) could overflow.
MAX_TOKENS = 10_000_000


def whole_number(name: str, value, minimum: int = 1, maximum: int | None = None) -> int:
    """value as an int when it is a whole number in [minimum, maximum] (5.0 counts; True, "5", 5.5 do not)."""
    allowed = f"a whole number >= {minimum:,}" + ("" if maximum is None else f" and <= {maximum:,}")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be {allowed} (got {value!r})")
    if not isinstance(value, numbers.Integral) and (not math.isfinite(value) or value != int(value)):
        raise ValueError(f"{name} must be {allowed} (got {value!r})")
    number = int(value)
    if number < minimum or (maximum is not None and number > maximum):
        raise ValueError(f"{name} must be {allowed} (got {value!r})")
    return number


def token_count(name: str, value, minimum: int = 1) -> int:
    """A request's token count: a whole number in [minimum, MAX_TOKENS]."""
    return whole_number(name, value, minimum, MAX_TOKENS)


def real_number(name: str, value, *, above: float | None = None, at_least: float | None = None,
                at_most: float | None = None, unit: str = "") -> float:
    """value as a float when it is finite, > above (or >= at_least) and <= at_most; NaN, inf, bools and
    strings fail."""
    bound = f" > {above:g}" if above is not None else (f" >= {at_least:g}" if at_least is not None else "")
    bound += "" if at_most is None else f"{' and' if bound else ''} <= {at_most:g}"
    allowed = f"a finite number{bound}{unit}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be {allowed} (got {value!r})")
    try:
        number = float(value)
    except OverflowError:  # an int beyond float range
        number = math.inf
    if (not math.isfinite(number) or (above is not None and not number > above)
            or (at_least is not None and not number >= at_least)
            or (at_most is not None and not number <= at_most)):
        raise ValueError(f"{name} must be {allowed} (got {value!r})")
    return number
