"""A broken trace file is refused with a TraceError naming the file, row (or line) and column."""
import json

import pytest

from tessera.workload import TraceError, load_trace

AZURE_HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"
GOOD_ROWS = ["2023-11-16 18:17:03.9799600,4808,10", "2023-11-16 18:17:04.0319600,3180,8",
             "2023-11-16 18:17:05.0000000,200,30"]


def write_azure(tmp_path, rows, header=AZURE_HEADER):
    path = tmp_path / "trace.csv"
    path.write_text(header + "\n".join(rows) + "\n")
    return path


def write_mooncake(tmp_path, records):
    path = tmp_path / "trace.jsonl"
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def refused(path, **options) -> str:
    with pytest.raises(TraceError) as caught:
        load_trace(path, **options)
    message = str(caught.value)
    assert str(path) in message
    return message


def test_good_file_loads(tmp_path):
    requests = load_trace(write_azure(tmp_path, GOOD_ROWS))
    assert [r.prompt_tokens for r in requests] == [4808, 3180, 200]


def test_missing_column(tmp_path):
    path = write_azure(tmp_path, ["2023-11-16 18:17:03,4808"] * 2,
                       header="TIMESTAMP,ContextTokens\n")
    message = refused(path, format="azure")
    assert "header (line 1)" in message and "'GeneratedTokens' is missing" in message


def test_unknown_columns_without_format(tmp_path):
    message = refused(write_azure(tmp_path, ["1,2,3"], header="a,b,c\n"))
    assert "header (line 1)" in message and "format=" in message


def test_negative_length(tmp_path):
    rows = GOOD_ROWS[:2] + ["2023-11-16 18:17:05.0000000,-5,30"]
    message = refused(write_azure(tmp_path, rows))
    assert "data row 3 (line 4)" in message and "'ContextTokens'" in message and "-5" in message


def test_zero_prompt_and_zero_output(tmp_path):
    message = refused(write_azure(tmp_path, ["2023-11-16 18:17:05,0,30"]))
    assert "data row 1 (line 2)" in message and "'ContextTokens'" in message
    message = refused(write_azure(tmp_path, GOOD_ROWS + ["2023-11-16 18:17:06,10,0"]))
    assert "data row 4 (line 5)" in message and "'GeneratedTokens'" in message


def test_non_numeric_and_empty_and_fractional(tmp_path):
    message = refused(write_azure(tmp_path, GOOD_ROWS + ["2023-11-16 18:17:06,12,abc"]))
    assert "data row 4 (line 5)" in message and "'GeneratedTokens'" in message and "abc" in message
    message = refused(write_azure(tmp_path, [GOOD_ROWS[0], "2023-11-16 18:17:06,,5"]))
    assert "data row 2 (line 3)" in message and "'ContextTokens'" in message and "empty" in message
    message = refused(write_azure(tmp_path, [GOOD_ROWS[0], "2023-11-16 18:17:06,12.5,5"]))
    assert "data row 2 (line 3)" in message and "whole number" in message


def test_unsorted_time(tmp_path):
    rows = [GOOD_ROWS[0], GOOD_ROWS[2], GOOD_ROWS[1]]
    message = refused(write_azure(tmp_path, rows))
    assert "data row 3 (line 4)" in message and "'TIMESTAMP'" in message and "sort" in message


def test_bad_timestamp(tmp_path):
    message = refused(write_azure(tmp_path, [GOOD_ROWS[0], "yesterday,5,5"]))
    assert "data row 2 (line 3)" in message and "'TIMESTAMP'" in message and "yesterday" in message


GOOD_RECORD = {"timestamp": 0, "input_length": 100, "output_length": 10, "hash_ids": [0]}


def test_mooncake_errors_name_the_line(tmp_path):
    records = [GOOD_RECORD, {**GOOD_RECORD, "timestamp": 50},
               {**GOOD_RECORD, "timestamp": 20}]
    message = refused(write_mooncake(tmp_path, records))
    assert "line 3" in message and "'timestamp'" in message and "sort" in message

    records = [GOOD_RECORD, {**GOOD_RECORD, "output_length": -1}]
    message = refused(write_mooncake(tmp_path, records))
    assert "line 2" in message and "'output_length'" in message

    records = [GOOD_RECORD, {**GOOD_RECORD, "input_length": "many"}]
    message = refused(write_mooncake(tmp_path, records))
    assert "line 2" in message and "'input_length'" in message and "many" in message

    records = [GOOD_RECORD, {"timestamp": 5, "output_length": 3}]
    message = refused(write_mooncake(tmp_path, records))
    assert "line 2" in message and "'input_length'" in message and "empty" in message

    records = [{"timestamp": 5, "output_length": 3}]
    message = refused(write_mooncake(tmp_path, records))
    assert "line 1" in message and "'input_length' is missing" in message


def test_mooncake_broken_json_line(tmp_path):
    path = tmp_path / "trace.jsonl"
    path.write_text(json.dumps(GOOD_RECORD) + "\n{not json\n")
    assert "line 2" in refused(path)


def test_trace_error_is_a_value_error():
    assert issubclass(TraceError, ValueError)
