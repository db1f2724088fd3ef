"""Checks of a trace's columns: token counts (whole numbers in [1, MAX_TOKENS]) and arrival times (finite, sorted).

Arrival times must already be in non-decreasing order: an unsorted trace is refused, not sorted, because
it is most often a broken export or concatenated files, and sorting would silently renumber its requests.
A bad cell raises TraceError naming the file, the first offending row, the column, how many rows share
the problem, and the fix.
"""
from __future__ import annotations

import math
import numbers

import numpy as np
import pandas as pd

from tessera.workload.checks import MAX_TOKENS
from tessera.workload.trace_error import TraceError, TraceLocator

SHOWN_ROWS = 5  # offending rows listed in a message


def _cell(value) -> tuple[float, bool, bool]:
    """(number, is_empty, is_not_a_number) of one object cell: bools, lists, dicts and words are not numbers."""
    if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return math.nan, True, False
    if isinstance(value, (bool, np.bool_)):
        return math.nan, False, True
    if isinstance(value, numbers.Real):
        try:
            return float(value), False, False
        except OverflowError:  # an int beyond float range
            return math.copysign(math.inf, value), False, False
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return math.nan, True, False
        try:
            return float(text), False, False  # "inf" and "1e23" are numbers, refused below as such
        except ValueError:
            return math.nan, False, True
    return math.nan, False, True


def numeric_cells(raw: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values as float64, empty mask, not-a-number mask); vectorised unless the column holds non-numbers."""
    if pd.api.types.is_bool_dtype(raw):
        n = len(raw)
        return np.full(n, np.nan), np.zeros(n, bool), np.ones(n, bool)
    if pd.api.types.is_numeric_dtype(raw):
        values = raw.to_numpy(dtype=np.float64, na_value=np.nan)
        return values, np.isnan(values), np.zeros(len(values), bool)
    cells = [_cell(v) for v in raw.tolist()]
    values = np.array([c[0] for c in cells], dtype=np.float64)
    return values, np.array([c[1] for c in cells], bool), np.array([c[2] for c in cells], bool)


def shown(value) -> str:
    """A cell as the user wrote it: 'abc', 1e+23, True (not numpy's np.float64(...) reprs)."""
    if isinstance(value, np.generic):
        value = value.item()
    return repr(value)


def _refuse_first(problems: list[tuple[np.ndarray, object]], locate: TraceLocator, column: str,
                  rule: str) -> None:
    """Raise for the earliest row any problem mask marks; problems: (mask, row index -> description)."""
    bad = np.zeros(len(problems[0][0]), bool)
    for mask, _ in problems:
        bad |= mask
    if not bad.any():
        return
    first = int(np.argmax(bad))
    describe = next(text for mask, text in problems if mask[first])
    message = f"{locate.at(first, column)}: {describe(first)}; {rule} - fix or delete that row"
    count = int(bad.sum())
    if count > 1:
        shown = np.flatnonzero(bad)[:SHOWN_ROWS]
        more = ", ..." if count > SHOWN_ROWS else ""
        message += f" ({count:,} rows have bad '{column}' values: {locate.rows(shown)}{more})"
    raise TraceError(message)


def token_counts(frame: pd.DataFrame, column: str, locate: TraceLocator, what: str) -> np.ndarray:
    """The column as int64 token counts, each a whole number in [1, MAX_TOKENS]."""
    raw = frame[column]
    values, empty, not_number = numeric_cells(raw)
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(values)
        problems = [
            (empty, lambda i: "is empty"),
            (not_number, lambda i: f"value {shown(raw.iloc[i])} is not a number"),
            (~empty & ~not_number & ~finite, lambda i: f"value {shown(raw.iloc[i])} is not a finite number"),
            (finite & (values != np.floor(values)),
             lambda i: f"value {float(values[i])} is not a whole number"),
            (finite & (values < 1), lambda i: f"{what} length {int(values[i])} must be >= 1 (every request "
                                              "has a prompt and yields at least its first token)"),
            (finite & (values > MAX_TOKENS),
             lambda i: f"{what} length {values[i]:.6g} is above {MAX_TOKENS:,}, the most tokens a request may have"),
        ]
    _refuse_first(problems, locate, column, f"token counts must be whole numbers from 1 to {MAX_TOKENS:,}")
    return values.astype(np.int64)


def _datetimes(raw: pd.Series, locate: TraceLocator, column: str) -> pd.Series:
    try:
        return pd.to_datetime(raw, format="ISO8601", errors="coerce")
    except (ValueError, TypeError, OverflowError) as error:  # e.g. times with and without a time zone
        aware = []
        for value in raw.tolist():
            try:
                aware.append(pd.Timestamp(value).tzinfo is not None)
            except (ValueError, TypeError, OverflowError):
                aware.append(None)
        known = [a for a in aware if a is not None]
        first = next((i for i, a in enumerate(aware) if a is not None and a != known[0]), None)
        where = locate.at(first, column) if first is not None else f"{locate.path}, column '{column}'"
        reason = (f"value {shown(raw.iloc[first])} has {'a' if aware[first] else 'no'} time zone, unlike the "
                  f"rows before it" if first is not None else f"the times cannot be read together ({error})")
        raise TraceError(f"{where}: {reason}; write every time in one format and one time zone (or none), "
                         "e.g. 2023-11-16 18:17:03.9799600") from None


def _first_cell_is_number(raw: pd.Series) -> bool:
    """Azure times are date-times, or numbers in seconds: the first non-empty cell says which."""
    for value in raw.tolist():
        number, empty, not_number = _cell(value)
        if not empty:
            return not not_number
    return False


def arrival_seconds(frame: pd.DataFrame, column: str, name: str, time_unit_s: float,
                    locate: TraceLocator) -> np.ndarray:
    """Seconds since the first record: numeric times in time_unit_s, or (azure) ISO 8601 date-times."""
    raw = frame[column]
    numeric = pd.api.types.is_numeric_dtype(raw) or name != "azure" or _first_cell_is_number(raw)
    if numeric:
        values, empty, not_time = numeric_cells(raw)
        seconds = values * time_unit_s
    else:
        stamps = _datetimes(raw, locate, column)
        empty = np.array([_cell(v)[1] for v in raw.tolist()], bool)
        not_time = stamps.isna().to_numpy() & ~empty
        seconds = (stamps - stamps.min()).dt.total_seconds().to_numpy(np.float64, na_value=np.nan)
    expected = ("a time like 2023-11-16 18:17:03.9799600" if name == "azure"
                else "a finite number (milliseconds since trace start)")
    with np.errstate(invalid="ignore"):
        problems = [(empty, lambda i: "is empty"),
                    (not_time, lambda i: f"value {shown(raw.iloc[i])} is not a time"),
                    (~empty & ~not_time & ~np.isfinite(seconds),
                     lambda i: f"value {shown(raw.iloc[i])} is not a finite time")]
    _refuse_first(problems, locate, column, f"expected {expected}")
    with np.errstate(over="ignore", invalid="ignore"):
        order = np.diff(seconds) < 0
        relative = seconds - seconds[0]
    if order.any():
        first = int(np.argmax(order)) + 1
        count = int(order.sum())
        also = f" ({count:,} rows are earlier than the row before them)" if count > 1 else ""
        raise TraceError(
            f"{locate.at(first, column)}: arrival {raw.iloc[first]} is earlier than the previous row's "
            f"{raw.iloc[first - 1]}{also}; traces must be sorted by arrival time - sort the file by "
            f"'{column}' before loading it")
    if not np.isfinite(relative).all():  # finite times whose span overflows
        first = int(np.argmax(~np.isfinite(relative)))
        raise TraceError(f"{locate.at(first, column)}: arrival {raw.iloc[first]} is too far from the first "
                         f"row's {raw.iloc[0]}; fix the times (expected {expected})")
    return relative
