"""Read a request trace (Azure 2023 CSV, Mooncake JSONL, or a length table) into checked arrays.

Validation is vectorised; a bad file raises TraceError naming the file, row (or line) and column.
Column rules (token counts, sorted arrival times) are in trace_columns.py.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tessera.paths import data_path
from tessera.workload.trace_columns import arrival_seconds, token_counts
from tessera.workload.trace_error import TraceError, TraceLocator

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
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        raise TraceError(f"trace '{name_or_path}' is a directory, not a trace file; pass the path of a .csv "
                         f"or .jsonl file inside it, or a named trace ({', '.join(NAMED_TRACES)})")
    if not path.is_file():
        raise FileNotFoundError(
            f"trace '{name_or_path}' is neither a named trace ({', '.join(NAMED_TRACES)}) "
            f"nor an existing file (looked for {path.absolute()}; a relative path is taken from the working "
            f"directory); pass one of those names or a path to a .csv/.jsonl trace")
    return path


def read_trace_file(name_or_path: str | Path, format: str | None = None) -> TraceTable:
    """Read and check a trace; format is 'azure', 'mooncake' or 'lengths' (None: detect it)."""
    path = resolve_trace_path(name_or_path)
    if format is not None and format not in TRACE_FORMATS:
        raise ValueError(f"unknown trace format '{format}'; allowed: {', '.join(TRACE_FORMATS)} "
                         f"(or None to detect it from the file)")
    suffix = path.suffix.lower()
    is_jsonl = suffix in (".jsonl", ".json") or (suffix != ".csv" and format == "mooncake")
    if suffix not in COMPRESSED_SUFFIXES:  # pandas decompresses those itself
        _check_text(path)
    if is_jsonl:
        frame, line_numbers = _read_jsonl(path)
        locate = TraceLocator(path, line_numbers)
    else:
        frame, locate = _read_csv(path), TraceLocator(path)
    trace_format = TRACE_FORMATS[format or _detect_format(path, frame, is_jsonl)]
    if not is_jsonl:
        _check_header(path, trace_format)
    return _check(frame, trace_format, locate)


COMPRESSED_SUFFIXES = (".gz", ".bz2", ".zip", ".xz", ".zst")
BINARY_MAGIC = {b"PAR1": "a Parquet file", b"PK\x03\x04": "a ZIP archive (or .xlsx workbook)",
                b"\x1f\x8b": "a gzip file", b"%PDF": "a PDF file", b"\x89HDF": "an HDF5 file"}


def _check_text(path: Path) -> None:
    """Refuse binary files up front: pandas would read their bytes as odd column names or values."""
    with open(path, "rb") as file:
        head = file.read(65536)
    kind = next((what for magic, what in BINARY_MAGIC.items() if head.startswith(magic)), None)
    nul = head.find(b"\x00")
    if kind is None and nul >= 0:
        kind = f"a binary file (a NUL byte at offset {nul})"
    if kind is not None:
        raise TraceError(f"{path}: this is {kind}, not a text trace; convert it to CSV (columns "
                         f"{', '.join(TRACE_FORMATS['azure'].columns)}) or JSON Lines (fields "
                         f"{', '.join(TRACE_FORMATS['mooncake'].columns)})")


def _not_utf8(path: Path) -> TraceError:
    data = path.read_bytes()  # the decoder's offset is within its chunk: find the byte in the file
    try:
        data.decode("utf-8")
        where = ""
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        where = f" (byte 0x{data[error.start]:02x} on line {line}, offset {error.start})"
    return TraceError(f"{path}: not UTF-8 text{where}; save the file as UTF-8")


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        # only empty cells are missing: 'nan', 'NA' and 'null' are values to refuse by name
        frame = pd.read_csv(path, skipinitialspace=True, keep_default_na=False, na_values=[""],
                            skip_blank_lines=False)
    except pd.errors.EmptyDataError:
        raise TraceError(f"{path}: the file is empty; a CSV trace needs a header line and one row per "
                         "request") from None
    except pd.errors.ParserError as error:
        detail = str(error).strip().splitlines()[0]
        raise TraceError(f"{path}: not a readable CSV file ({detail}); every row needs exactly the "
                         "header's comma-separated fields") from None
    except UnicodeDecodeError:
        raise _not_utf8(path) from None
    if not isinstance(frame.index, pd.RangeIndex):  # rows longer than the header became an index
        raise TraceError(f"{path}, data row 1 (line 2): more fields than the header's {len(frame.columns)} "
                         f"({', '.join(map(str, frame.columns))}); every row needs exactly the header's "
                         "fields - remove the extra ones or name them in the header")
    blank = frame.isna().all(axis=1).to_numpy()
    end = len(frame) - int(np.argmax(~blank[::-1])) if (~blank).any() else 0
    return frame.iloc[:end]  # trailing blank lines are not rows; blank lines inside are reported


def _check_header(path: Path, trace_format: TraceFormat) -> None:
    """pandas renames a repeated column ('X', 'X.1'); a trace column named twice is ambiguous."""
    with open(path, encoding="utf-8-sig", newline="") as file:
        header = [name.strip() for name in next(csv.reader(file), [])]
    for column in trace_format.columns:
        if header.count(column) > 1:
            raise TraceError(f"{path}, header (line 1): column '{column}' appears {header.count(column)} "
                             "times; keep one, so it is clear which holds the values")


def _read_jsonl(path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """Records and the file line of each (blank lines skipped); every line must be one JSON object."""
    records, line_numbers = [], []
    try:
        with open(path, encoding="utf-8-sig") as lines:
            for line_number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as error:
                    raise TraceError(f"{path}, line {line_number}: not valid JSON ({error.msg}); "
                                     f"each line must be one JSON object") from None
                if not isinstance(record, dict):
                    raise TraceError(f"{path}, line {line_number}: expected a JSON object, got "
                                     f"{type(record).__name__}; each line must be one JSON object")
                records.append(record)
                line_numbers.append(line_number)
    except UnicodeDecodeError:
        raise _not_utf8(path) from None
    if not records:
        raise TraceError(f"{path}: no records (the file is empty); a JSON Lines trace needs one JSON "
                         f"object per line with {', '.join(TRACE_FORMATS['mooncake'].columns)}")
    return pd.DataFrame.from_records(records), np.asarray(line_numbers, dtype=np.int64)


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


def _check(frame: pd.DataFrame, trace_format: TraceFormat, locate: TraceLocator) -> TraceTable:
    path = locate.path
    for column in trace_format.columns:
        if column not in frame.columns:
            where = "line 1" if locate.is_jsonl else "header (line 1)"
            raise TraceError(
                f"{path}, {where}: column '{column}' is missing (found: "
                f"{', '.join(map(str, frame.columns))}); the {trace_format.name} format needs "
                f"{', '.join(trace_format.columns)} - add the column or pass the right format=")
    if len(frame) == 0:
        raise TraceError(f"{path}: no data rows; a trace needs at least one request")
    prompt = token_counts(frame, trace_format.prompt_column, locate, "prompt")
    output = token_counts(frame, trace_format.output_column, locate, "output")
    arrival = None
    if trace_format.time_column is not None:
        arrival = arrival_seconds(frame, trace_format.time_column, trace_format.name,
                                  trace_format.time_unit_s, locate)
    return TraceTable(path, trace_format.name, arrival, prompt, output)
