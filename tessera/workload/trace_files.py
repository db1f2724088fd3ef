"""Read a request trace (Azure 2023 CSV, Mooncake JSONL, or a length table) into checked arrays.

Validation is vectorised; a bad file raises TraceError naming the file, row (or line) and column.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tessera.paths import data_path

NAMED_TRACES: dict[str, tuple[str, ...]] = {
    "azure_code": ("azure-llm-inference-2023", "AzureLLMInferenceTrace_code.csv"),
    "azure_conv": ("azure-llm-inference-2023", "AzureLLMInferenceTrace_conv.csv"),
    "mooncake_conversation": ("mooncake-traces", "conversation_trace.jsonl"),
    "mooncake_synthetic": ("mooncake-traces", "synthetic_trace.jsonl"),
    # length tables: token counts only, no arrival times
    "sharegpt": ("sharegpt-length-stats", "sharegpt_8k_filtered_stats_llama2_tokenizer.csv"),
    "arxiv": ("vidur-profiling", "processed_traces",
              "arxiv_summarization_stats_llama2_tokenizer_filtered_v2.csv"),
}


class TraceError(ValueError):
    """A trace file that cannot be used as recorded; the message names file, row, column and fix."""


@dataclass(frozen=True, slots=True)
class TraceFormat:
    """Where a format keeps arrival time and token counts."""

    name: str
    time_column: str | None  # None: a length table without arrival times
    prompt_column: str
    output_column: str
    time_unit_s: float  # seconds per unit of a numeric time column (unused for datetimes)

    @property
    def columns(self) -> tuple[str, ...]:
        head = (self.time_column,) if self.time_column else ()
        return head + (self.prompt_column, self.output_column)


TRACE_FORMATS: dict[str, TraceFormat] = {
    "azure": TraceFormat("azure", "TIMESTAMP", "ContextTokens", "GeneratedTokens", 1.0),
    "mooncake": TraceFormat("mooncake", "timestamp", "input_length", "output_length", 1e-3),
    "lengths": TraceFormat("lengths", None, "num_prefill_tokens", "num_decode_tokens", 1.0),
}


@dataclass(frozen=True, slots=True)
class TraceTable:
    """One trace file's records in file order, checked: sorted times, prompt >= 1, output >= 1."""

    path: Path
    format: str
    arrival_s: np.ndarray | None  # float64 seconds since the first record; None for length tables
    prompt_tokens: np.ndarray  # int64
    output_tokens: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.prompt_tokens)


def resolve_trace_path(name_or_path: str | Path) -> Path:
    """A shipped trace's path from its short name, or the given path if that file exists."""
    if str(name_or_path) in NAMED_TRACES:
        return data_path(*NAMED_TRACES[str(name_or_path)])
    path = Path(name_or_path)
    if not path.is_file():
        raise FileNotFoundError(
            f"trace '{name_or_path}' is neither a named trace ({', '.join(NAMED_TRACES)}) "
            f"nor an existing file; pass one of those names or a path to a .csv/.jsonl trace")
    return path


def read_trace_file(name_or_path: str | Path, format: str | None = None) -> TraceTable:
    """Read and check a trace; format is 'azure', 'mooncake' or 'lengths' (None: detect it)."""
    path = resolve_trace_path(name_or_path)
    if format is not None and format not in TRACE_FORMATS:
        raise ValueError(f"unknown trace format '{format}'; allowed: {', '.join(TRACE_FORMATS)} "
                         f"(or None to detect it from the file)")
    suffix = path.suffix.lower()
    is_jsonl = suffix in (".jsonl", ".json") or (suffix != ".csv" and format == "mooncake")
    frame = _read_jsonl(path) if is_jsonl else _read_csv(path)
    trace_format = TRACE_FORMATS[format or _detect_format(path, frame, is_jsonl)]
    return _check(path, frame, trace_format, is_jsonl)


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, skipinitialspace=True)
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise TraceError(f"{path}: not a readable CSV file ({error}); fix the file's "
                         f"format") from None


def _read_jsonl(path: Path) -> pd.DataFrame:
    try:
        return pd.read_json(path, lines=True, dtype=False)
    except ValueError:
        pass
    # pandas does not say which line is broken: find it
    with open(path, encoding="utf-8") as lines:
        for line_number, line in enumerate(lines, start=1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise TraceError(f"{path}, line {line_number}: not valid JSON ({error.msg}); "
                                 f"each line must be one JSON object") from None
            if not isinstance(record, dict):
                raise TraceError(f"{path}, line {line_number}: expected a JSON object, got "
                                 f"{type(record).__name__}; each line must be one JSON object")
    raise TraceError(f"{path}: could not read it as JSON Lines; each line must be one JSON object")


def _detect_format(path: Path, frame: pd.DataFrame, is_jsonl: bool) -> str:
    if is_jsonl:
        return "mooncake"
    for name, trace_format in TRACE_FORMATS.items():
        if trace_format.prompt_column in frame.columns:
            return name
    expected = "; ".join(f"{name}: {', '.join(f.columns)}" for name, f in TRACE_FORMATS.items())
    raise TraceError(f"{path}, header (line 1): no known trace columns (found: "
                     f"{', '.join(map(str, frame.columns))}); expected one of {expected}, "
                     f"or pass format= explicitly")


class _Locator:
    """Turns a 0-based record index into 'file, data row r (line l), column c'."""

    def __init__(self, path: Path, is_jsonl: bool):
        self.path, self.is_jsonl = path, is_jsonl

    def at(self, index: int, column: str) -> str:
        if self.is_jsonl:
            return f"{self.path}, line {index + 1}, field '{column}'"
        return f"{self.path}, data row {index + 1} (line {index + 2}), column '{column}'"


def _check(path: Path, frame: pd.DataFrame, trace_format: TraceFormat,
           is_jsonl: bool) -> TraceTable:
    locate = _Locator(path, is_jsonl)
    for column in trace_format.columns:
        if column not in frame.columns:
            where = "line 1" if is_jsonl else "header (line 1)"
            raise TraceError(
                f"{path}, {where}: column '{column}' is missing (found: "
                f"{', '.join(map(str, frame.columns))}); the {trace_format.name} format needs "
                f"{', '.join(trace_format.columns)} - add the column or pass the right format=")
    if len(frame) == 0:
        raise TraceError(f"{path}: no data rows; a trace needs at least one request")
    prompt = _token_counts(frame, trace_format.prompt_column, locate, "prompt")
    output = _token_counts(frame, trace_format.output_column, locate, "output")
    arrival = None
    if trace_format.time_column is not None:
        arrival = _arrival_seconds(frame, trace_format, locate)
    return TraceTable(path, trace_format.name, arrival, prompt, output)


def _first(mask: np.ndarray) -> int | None:
    return int(np.argmax(mask)) if mask.any() else None


def _token_counts(frame: pd.DataFrame, column: str, locate: _Locator, what: str) -> np.ndarray:
    raw = frame[column]
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    if (bad := _first(np.isnan(values))) is not None:
        problem = ("is empty" if pd.isna(raw.iloc[bad])
                   else f"value {raw.iloc[bad]!r} is not a number")
        raise TraceError(f"{locate.at(bad, column)}: {problem}; token counts must be whole numbers "
                         f">= 1 - fix or delete that row")
    if (bad := _first(values != np.floor(values))) is not None:
        raise TraceError(f"{locate.at(bad, column)}: value {float(values[bad])} is not a whole "
                         f"number; token counts must be integers - fix or delete that row")
    if (bad := _first(values < 1)) is not None:
        raise TraceError(
            f"{locate.at(bad, column)}: {what} length {int(values[bad])} must be >= 1 (every "
            f"request has a prompt and yields at least its first token) - fix or delete that row")
    return values.astype(np.int64)


def _arrival_seconds(frame: pd.DataFrame, trace_format: TraceFormat,
                     locate: _Locator) -> np.ndarray:
    column = trace_format.time_column
    raw = frame[column]
    if pd.api.types.is_numeric_dtype(raw):
        seconds = raw.to_numpy(dtype=np.float64, na_value=np.nan) * trace_format.time_unit_s
    elif trace_format.name == "mooncake":
        seconds = pd.to_numeric(raw, errors="coerce").to_numpy(np.float64, na_value=np.nan)
        seconds *= trace_format.time_unit_s
    else:
        stamps = pd.to_datetime(raw, format="ISO8601", errors="coerce")
        seconds = (stamps - stamps.min()).dt.total_seconds().to_numpy(np.float64, na_value=np.nan)
    if (bad := _first(np.isnan(seconds))) is not None:
        problem = "is empty" if pd.isna(raw.iloc[bad]) else f"value {raw.iloc[bad]!r} is not a time"
        expected = ("a time like 2023-11-16 18:17:03.9799600" if trace_format.name == "azure"
                    else "a number (milliseconds since trace start)")
        raise TraceError(f"{locate.at(bad, column)}: {problem}; expected {expected} - fix or "
                         f"delete that row")
    if (bad := _first(np.diff(seconds) < 0)) is not None:
        raise TraceError(
            f"{locate.at(bad + 1, column)}: arrival {raw.iloc[bad + 1]} is earlier than the "
            f"previous row's {raw.iloc[bad]}; traces must be sorted by arrival time - sort the "
            f"file by '{column}' before loading it")
    return seconds - seconds[0]
