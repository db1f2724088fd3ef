"""Replay of the shipped traces: counts and mean lengths as in data/*/SOURCE.md; options; speed."""

import numpy as np
import pytest

from tessera.paths import data_path
from tessera.workload import describe, load_trace, read_trace_file
from tessera.workload.trace_files import TraceError

# name: (rows, mean prompt, mean output) from SOURCE.md
SHIPPED = {
    "azure_code": (8819, 2048, 28),
    "azure_conv": (19366, 1155, 211),
    "mooncake_conversation": (12031, 12035, 343),
    "mooncake_synthetic": (3993, 15325, 149),
}


@pytest.mark.parametrize("name", SHIPPED)
def test_named_trace_matches_source_md(name):
    rows, prompt_mean, output_mean = SHIPPED[name]
    requests = load_trace(name)
    summary = describe(requests)
    assert summary["count"] == rows
    assert summary["prompt_mean"] == pytest.approx(prompt_mean, abs=1)
    assert summary["output_mean"] == pytest.approx(output_mean, abs=1)
    assert [r.request_id for r in requests] == list(range(rows))
    arrival = np.array([r.arrival_s for r in requests])
    assert arrival[0] == 0.0 and np.all(np.diff(arrival) >= 0)


def test_azure_timestamps_keep_sub_millisecond_digits():
    requests = load_trace("azure_code", limit=2)
    # 18:17:03.9799600 -> 18:17:04.0319600
    assert requests[1].arrival_s == pytest.approx(0.052, abs=1e-9)
    assert describe(load_trace("azure_code"))["span_s"] == pytest.approx(3435.948, abs=1e-3)


def test_mooncake_span_is_in_seconds():
    assert describe(load_trace("mooncake_conversation"))["span_s"] == pytest.approx(3537.0, abs=1)


def test_path_and_explicit_format_equal_named():
    path = data_path("azure-llm-inference-2023", "AzureLLMInferenceTrace_code.csv")
    assert load_trace(path, limit=50) == load_trace("azure_code", limit=50)
    assert load_trace(str(path), format="azure", limit=50) == load_trace("azure_code", limit=50)


def test_limit_window_and_speedup():
    full = load_trace("azure_conv")
    window = load_trace("azure_conv", start_s=600, end_s=1200)
    expected = [r for r in full if 600 <= r.arrival_s < 1200]
    assert len(window) == len(expected)
    assert window[0].arrival_s == 0.0
    assert window[-1].arrival_s == pytest.approx(expected[-1].arrival_s - expected[0].arrival_s)
    assert window[5].prompt_tokens == expected[5].prompt_tokens

    fast = load_trace("azure_conv", limit=100, speedup=4.0)
    assert len(fast) == 100
    assert fast[-1].arrival_s == pytest.approx(full[99].arrival_s / 4.0)


def test_token_caps_clip_or_drop():
    full = load_trace("mooncake_conversation")
    clipped = load_trace("mooncake_conversation", max_prompt_tokens=8192, max_total_tokens=8192)
    assert len(clipped) == len(full)
    assert max(r.prompt_tokens for r in clipped) == 8191
    assert all(r.prompt_tokens + r.output_tokens <= 8192 and r.output_tokens >= 1 for r in clipped)

    dropped = load_trace("mooncake_conversation", max_total_tokens=8192, over_limit="drop")
    assert len(dropped) == sum(r.prompt_tokens + r.output_tokens <= 8192 for r in full)
    assert [r.request_id for r in dropped] == list(range(len(dropped)))
    assert dropped[0].arrival_s == 0.0


def test_length_tables_read_but_cannot_be_replayed():
    table = read_trace_file("sharegpt")
    assert table.arrival_s is None and len(table) == 30731
    with pytest.raises(TraceError, match="no arrival times"):
        load_trace("sharegpt")


@pytest.mark.parametrize("options, message", [
    ({"limit": 0}, "limit"), ({"speedup": 0}, "speedup"), ({"start_s": 5, "end_s": 5}, "end_s"),
    ({"over_limit": "cut"}, "over_limit"), ({"start_s": 1e9}, "no request left"),
])
def test_bad_options_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        load_trace("azure_code", **options)


def test_unknown_name_lists_named_traces():
    with pytest.raises(FileNotFoundError, match="azure_code"):
        load_trace("azure_cod")
