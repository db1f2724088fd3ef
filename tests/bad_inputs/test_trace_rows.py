"""Bad trace files (CSV and JSON Lines) are refused with a TraceError naming the file, the row and the column.

Hypothesis writes random hostile values into random cells: the file loads correctly or raises TraceError.
"""
import json
import math

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from tessera.workload import TraceError, build_workload, load_trace, read_trace_file
from tests.bad_inputs.corpus import refused

AZ = "TIMESTAMP,ContextTokens,GeneratedTokens\n"
T0, T1, T2 = "2023-11-16 18:17:03.9799600", "2023-11-16 18:17:04.0319600", "2023-11-16 18:17:05.0000000"
NUM = "TIMESTAMP,ContextTokens,GeneratedTokens\n"  # numeric (seconds) timestamps, same columns


def mc(*records) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)


def rec(t=0, i=5, o=3):
    return {"timestamp": t, "input_length": i, "output_length": o}


# (id, file name, content, format, needles besides the path)
CASES = [
    # ----- azure CSV: token counts
    ("csv-prompt-inf", "t.csv", AZ + f"{T0},inf,5\n", None, ["data row 1 (line 2)", "'ContextTokens'", "finite"]),
    ("csv-prompt-neg-inf", "t.csv", AZ + f"{T0},-inf,5\n", None, ["data row 1", "'ContextTokens'"]),
    ("csv-prompt-1e23", "t.csv", AZ + f"{T0},1e23,5\n", None, ["data row 1", "'ContextTokens'", "10,000,000"]),
    ("csv-prompt-23-digits", "t.csv", AZ + f"{T0},99999999999999999999999,5\n", None,
     ["data row 1", "'ContextTokens'", "10,000,000"]),
    ("csv-prompt-above-bound", "t.csv", AZ + f"{T0},10000001,5\n", None, ["'ContextTokens'", "10,000,000"]),
    ("csv-output-1e23", "t.csv", AZ + f"{T0},5,1e23\n", None, ["data row 1", "'GeneratedTokens'"]),
    ("csv-prompt-nan-word", "t.csv", AZ + f"{T0},nan,5\n", None, ["'ContextTokens'", "'nan'"]),
    ("csv-prompt-NA-word", "t.csv", AZ + f"{T0},NA,5\n", None, ["'ContextTokens'", "'NA'", "not a number"]),
    ("csv-prompt-bool", "t.csv", AZ + f"{T0},True,5\n", None, ["'ContextTokens'", "not a number"]),
    ("csv-prompt-empty", "t.csv", AZ + f"{T0},,5\n", None, ["data row 1", "'ContextTokens'", "empty"]),
    ("csv-prompt-blank", "t.csv", AZ + f"{T0}, ,5\n", None, ["'ContextTokens'", "empty"]),
    ("csv-prompt-fraction", "t.csv", AZ + f"{T0},12.5,5\n", None, ["'ContextTokens'", "whole number"]),
    ("csv-prompt-zero", "t.csv", AZ + f"{T0},0,5\n", None, ["'ContextTokens'", ">= 1"]),
    ("csv-output-negative", "t.csv", AZ + f"{T0},5,-3\n", None, ["'GeneratedTokens'", "-3"]),
    ("csv-prompt-words", "t.csv", AZ + f"{T0},5 tokens,5\n", None, ["'ContextTokens'", "'5 tokens'"]),
    ("csv-prompt-hex", "t.csv", AZ + f"{T0},0x10,5\n", None, ["'ContextTokens'", "'0x10'"]),
    ("csv-later-rows-counted", "t.csv", AZ + f"{T0},5,5\n{T1},-1,5\n{T2},-2,5\n", None,
     ["data row 2 (line 3)", "2 rows have bad 'ContextTokens' values: data rows 2, 3"]),
    ("csv-row-too-short", "t.csv", AZ + f"{T0},5\n", None, ["data row 1", "'GeneratedTokens'", "empty"]),
    ("csv-row-too-long", "t.csv", AZ + f"{T0},5,5,7,8\n", None, ["data row 1 (line 2)", "more fields"]),
    ("csv-ragged-later-row", "t.csv", AZ + f"{T0},5,5\n{T1},5,5,9\n", None, ["not a readable CSV", "line 3"]),
    ("csv-blank-line-inside", "t.csv", AZ + f"{T0},5,5\n\n{T2},5,5\n", None, ["data row 2 (line 3)", "empty"]),
    ("csv-duplicate-column", "t.csv", "TIMESTAMP,ContextTokens,ContextTokens,GeneratedTokens\n"
     f"{T0},5,6,5\n", None, ["header (line 1)", "'ContextTokens' appears 2 times"]),
    # ----- azure CSV: times
    ("csv-time-word", "t.csv", AZ + f"{T0},5,5\nyesterday,5,5\n", None, ["data row 2", "'TIMESTAMP'", "yesterday"]),
    ("csv-time-empty", "t.csv", AZ + f"{T0},5,5\n,5,5\n", None, ["data row 2", "'TIMESTAMP'", "empty"]),
    ("csv-time-unsorted", "t.csv", AZ + f"{T0},5,5\n{T2},5,5\n{T1},5,5\n", None,
     ["data row 3 (line 4)", "'TIMESTAMP'", "sort"]),
    ("csv-time-mixed-zones", "t.csv", AZ + f"{T0}+00:00,5,5\n{T1},5,5\n", None,
     ["data row 2", "'TIMESTAMP'", "time zone"]),
    ("csv-time-number-among-dates", "t.csv", AZ + f"{T0},5,5\n5,5,5\n", None, ["data row 2", "not a time"]),
    ("csv-numeric-time-inf", "t.csv", NUM + "1,5,5\ninf,5,5\n", None, ["data row 2", "'TIMESTAMP'", "finite"]),
    ("csv-numeric-time-nan", "t.csv", NUM + "1,5,5\nnan,5,5\n", None, ["data row 2", "'TIMESTAMP'"]),
    ("csv-numeric-time-unsorted", "t.csv", NUM + "5,5,5\n1,5,5\n", None, ["data row 2", "sort"]),
    ("csv-numeric-time-span-overflow", "t.csv", NUM + "-1e308,5,5\n1e308,5,5\n", None,
     ["data row 2", "too far"]),
    # ----- whole-file problems
    ("csv-empty-file", "t.csv", "", None, ["empty"]),
    ("csv-header-only", "t.csv", AZ, None, ["no data rows"]),
    ("csv-missing-column", "t.csv", "TIMESTAMP,ContextTokens\n" + f"{T0},5\n", "azure",
     ["header (line 1)", "'GeneratedTokens' is missing"]),
    ("csv-unknown-columns", "t.csv", "a,b,c\n1,2,3\n", None, ["header (line 1)", "no known trace columns"]),
    ("csv-binary-bytes", "t.csv", bytes(range(256)) * 4, None, ["binary", "CSV"]),
    ("csv-not-utf8", "t.csv", (AZ + f"{T0},5,5\n").encode() + b"\xff\xfe,\x80\n", None, ["not UTF-8", "line 3"]),
    ("parquet-file", "t.parquet", b"PAR1\x00\x00garbage", None, ["Parquet"]),
    ("zip-file", "t.csv", b"PK\x03\x04garbage", None, ["ZIP"]),
    ("text-file", "t.txt", "hello world\n", None, ["no known trace columns"]),
    ("lengths-table-1e23", "l.csv", "num_prefill_tokens,num_decode_tokens\n5,5\n1e23,4\n", None,
     ["data row 2", "'num_prefill_tokens'"]),
    ("lengths-table-replayed", "l.csv", "num_prefill_tokens,num_decode_tokens\n5,5\n", None, ["no arrival times"]),
    # ----- mooncake JSON Lines
    ("jsonl-prompt-1e23", "t.jsonl", mc(rec(i=1e23)), None, ["line 1", "'input_length'", "10,000,000"]),
    ("jsonl-prompt-inf", "t.jsonl", mc('{"timestamp": 0, "input_length": 1e400, "output_length": 3}'), None,
     ["line 1", "'input_length'", "finite"]),
    ("jsonl-prompt-Infinity", "t.jsonl", mc('{"timestamp": 0, "input_length": Infinity, "output_length": 3}'),
     None, ["line 1", "'input_length'"]),
    ("jsonl-prompt-NaN", "t.jsonl", mc('{"timestamp": 0, "input_length": NaN, "output_length": 3}'), None,
     ["line 1", "'input_length'"]),
    ("jsonl-prompt-huge-int", "t.jsonl", mc(rec(i=123456789012345678901234567890)), None,
     ["line 1", "'input_length'", "10,000,000"]),
    ("jsonl-prompt-list", "t.jsonl", mc(rec(i=[1, 2])), None, ["line 1", "'input_length'", "not a number"]),
    ("jsonl-prompt-object", "t.jsonl", mc(rec(i={"a": 1})), None, ["'input_length'", "not a number"]),
    ("jsonl-prompt-true", "t.jsonl", mc(rec(i=True)), None, ["'input_length'", "not a number"]),
    ("jsonl-prompt-null", "t.jsonl", mc(rec(), rec(i=None)), None, ["line 2", "'input_length'", "empty"]),
    ("jsonl-prompt-string", "t.jsonl", mc(rec(i="abc")), None, ["'input_length'", "'abc'"]),
    ("jsonl-output-zero", "t.jsonl", mc(rec(o=0)), None, ["'output_length'", ">= 1"]),
    ("jsonl-output-fraction", "t.jsonl", mc(rec(o=2.5)), None, ["'output_length'", "whole number"]),
    ("jsonl-field-missing-in-one", "t.jsonl", mc(rec(), {"timestamp": 1, "input_length": 5}), None,
     ["line 2", "'output_length'"]),
    ("jsonl-field-missing", "t.jsonl", mc({"timestamp": 1, "input_length": 5}), None,
     ["'output_length' is missing"]),
    ("jsonl-time-string", "t.jsonl", mc(rec(t="abc")), None, ["line 1", "'timestamp'", "not a time"]),
    ("jsonl-time-null", "t.jsonl", mc(rec(t=None)), None, ["'timestamp'", "empty"]),
    ("jsonl-time-inf", "t.jsonl", mc(rec(), '{"timestamp": 1e400, "input_length": 5, "output_length": 3}'),
     None, ["line 2", "'timestamp'", "finite"]),
    ("jsonl-time-true", "t.jsonl", mc(rec(t=True)), None, ["'timestamp'"]),
    ("jsonl-time-object", "t.jsonl", mc(rec(t={"ms": 1})), None, ["'timestamp'", "not a time"]),
    ("jsonl-time-unsorted", "t.jsonl", mc(rec(t=5), rec(t=1)), None, ["line 2", "'timestamp'", "sort"]),
    ("jsonl-bad-json", "t.jsonl", mc(rec(), '{"timestamp": 1, "input_length": 5,'), None,
     ["line 2", "not valid JSON"]),
    ("jsonl-array-line", "t.jsonl", mc("[1, 2, 3]"), None, ["line 1", "expected a JSON object"]),
    ("jsonl-number-line", "t.jsonl", mc("42"), None, ["line 1", "expected a JSON object"]),
    ("jsonl-empty-file", "t.jsonl", "", None, ["no records"]),
    ("jsonl-blank-lines-only", "t.jsonl", "\n\n  \n", None, ["no records"]),
    ("jsonl-blank-line-numbering", "t.jsonl", mc(rec(), "", rec(i=0)), None, ["line 3", "'input_length'"]),
    ("jsonl-not-utf8", "t.jsonl", b'{"timestamp": 0, "input_length": 5, "output_length": 3}\n\xff\n', None,
     ["not UTF-8", "line 2"]),
    ("jsonl-binary", "t.jsonl", b"\x00\x01\x02" * 50, None, ["binary"]),
    ("directory", "somedir/", None, None, ["is a directory"]),
]


def write(tmp_path, name, content):
    path = tmp_path / name
    if name.endswith("/"):
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


@pytest.mark.parametrize("name, content, format, needles", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_trace_is_a_trace_error_naming_file_row_and_column(tmp_path, name, content, format, needles):
    path = write(tmp_path, name, content)
    refused(TraceError, lambda: load_trace(path, format=format), str(path).rstrip("/"), *needles)


def test_a_users_own_trace_through_the_workload_spec_keeps_its_type(tmp_path):
    path = write(tmp_path, "mine.csv", AZ + f"{T0},1e23,5\n")
    refused(TraceError, lambda: build_workload({"kind": "trace", "name": str(path)}), str(path), "'ContextTokens'")
    refused(TraceError, lambda: build_workload({"kind": "synthetic", "num_requests": 3, "arrival": {"kind": "burst"},
                                                "lengths": {"kind": "trace", "name": str(path)}}), str(path))


def test_good_files_with_bom_blank_tail_and_spaces_load(tmp_path):
    path = write(tmp_path, "ok.csv", "\ufeff" + AZ + f"{T0}, 5, 7\n{T1},6,8\n\n\n")
    assert [(r.prompt_tokens, r.output_tokens) for r in load_trace(path)] == [(5, 7), (6, 8)]
    path = write(tmp_path, "ok.jsonl", "\ufeff" + mc(rec(t=0), "", rec(t=1000, i=9)))
    requests = load_trace(path)
    assert [r.prompt_tokens for r in requests] == [5, 9] and requests[1].arrival_s == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------- hypothesis
hostile = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**30, 10**30), st.booleans(), st.none(),
    st.text(max_size=8), st.lists(st.integers(), max_size=2), st.sampled_from([1e23, 10**7 + 1, 0, -1, 2.5]))


def _check_loaded(table) -> None:
    for column in (table.prompt_tokens, table.output_tokens):
        assert column.dtype.kind == "i" and (column >= 1).all() and (column <= 10_000_000).all()
    if table.arrival_s is not None:
        assert all(math.isfinite(t) for t in table.arrival_s) and (table.arrival_s[1:] >= table.arrival_s[:-1]).all()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=hostile, row=st.integers(0, 2), field=st.sampled_from(["timestamp", "input_length", "output_length"]))
def test_random_hostile_jsonl_cells_load_or_raise_trace_error(tmp_path, value, row, field):
    records = [rec(t=0), rec(t=10, i=7), rec(t=20, o=9)]
    records[row][field] = value
    path = tmp_path / "h.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    _loads_or_names_the_file(path)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=hostile, row=st.integers(0, 2), column=st.integers(0, 2))
def test_random_hostile_csv_cells_load_or_raise_trace_error(tmp_path, value, row, column):
    rows = [[T0, "5", "7"], [T1, "6", "8"], [T2, "9", "10"]]
    rows[row][column] = "" if value is None else str(value)
    path = tmp_path / "h.csv"
    path.write_text(AZ + "".join(",".join(r) + "\n" for r in rows), encoding="utf-8")
    _loads_or_names_the_file(path)


def _loads_or_names_the_file(path):
    """A hostile file either loads into a valid table or is a TraceError naming it; nothing else."""
    try:
        table = read_trace_file(path)
    except TraceError as error:
        assert str(path) in str(error)
        return
    _check_loaded(table)
