"""Results schema, latency columns, summaries and the save/load round trip."""
import json
import math

import numpy as np
import pandas as pd
import pytest

from tessera.results import add_latency_columns, empty_frame, is_complete_run, load, save_run, summarize
from tessera.results.io import strict_json
from tessera.results.schema import REQUEST_COLUMNS, conform
from tessera.results.summary import time_weighted_mean


def frame(n=4):
    rows = {c: [None] * n for c in REQUEST_COLUMNS}
    rows.update(request_id=list(range(n)), worker=[0] * n, arrival_s=[0.0, 1.0, 2.0, 3.0][:n],
                start_s=[0.0, 1.5, 2.0, 3.0][:n], first_token_s=[0.1, 1.6, 2.5, math.nan][:n],
                finish_s=[1.1, 2.6, 2.5, math.nan][:n], prompt_tokens=[10] * n, output_tokens=[11, 11, 1, 5][:n],
                preemptions=[0, 1, 0, 0][:n], bytes_moved=[0.0] * n,
                status=["finished", "finished", "finished", "rejected: too long"][:n])
    return conform(pd.DataFrame(rows))


def test_latency_columns_by_hand():
    lat = add_latency_columns(frame())
    assert lat["ttft_s"].tolist()[:3] == pytest.approx([0.1, 0.6, 0.5])
    assert lat["tpot_s"].tolist()[:2] == pytest.approx([0.1, 0.1])  # 1 s over 10 tokens after the first
    assert math.isnan(lat["tpot_s"][2])  # a single output token has no TPOT
    assert lat["queue_s"].tolist()[:2] == pytest.approx([0.0, 0.5])


def test_summary_counts_and_throughput():
    s = summarize(frame())
    assert (s["num_requests"], s["num_finished"], s["num_rejected"], s["preemptions"]) == (4, 3, 1, 1)
    assert s["duration_s"] == pytest.approx(2.6)
    assert s["request_throughput_per_s"] == pytest.approx(3 / 2.6)
    assert s["output_token_throughput_per_s"] == pytest.approx(23 / 2.6)
    assert s["ttft_s"]["p50"] == pytest.approx(0.5)


def test_time_weighted_mean_of_a_step_function():
    assert time_weighted_mean(np.array([0.0, 1.0]), np.array([0.0, 1.0]), 4.0) == pytest.approx(0.75)


def test_conform_names_missing_columns():
    with pytest.raises(ValueError, match="lacks schema columns"):
        conform(pd.DataFrame({"request_id": [1]}))
    assert list(empty_frame().columns) == list(REQUEST_COLUMNS)


def test_save_then_load_many_runs(tmp_path):
    for i in range(2):
        save_run(tmp_path / f"run{i}", frame(), summarize(frame()),
                 metadata={"config": {"seed": i, "model": {"name": "m"}}, "overrides": [f"seed={i}"]})
    assert is_complete_run(tmp_path / "run0")
    both = load(tmp_path)
    assert len(both) == 8 and sorted(both["cfg.seed"].unique()) == [0, 1]
    assert set(both["overrides"]) == {"seed=0", "seed=1"} and "ttft_s" in both
    meta = json.loads((tmp_path / "run1" / "summary.json").read_text())
    assert meta["summary"]["num_finished"] == 3


def test_load_refuses_a_path_with_no_runs(tmp_path):
    with pytest.raises(FileNotFoundError, match="no complete runs"):
        load(tmp_path)


def test_summary_json_is_strict_json(tmp_path):
    """NaN (no finished request) is null, an infinity (all requests at once) "inf": strict parsers read the file."""
    summary = {"ttft_s": {"p50": float("nan")}, "workload": {"rate_per_s": math.inf, "low": -math.inf},
               "n": np.int64(3), "x": np.float32(0.5), "rows": [float("nan"), 1.0]}
    assert strict_json(summary) == {"ttft_s": {"p50": None}, "workload": {"rate_per_s": "inf", "low": "-inf"},
                                    "n": 3, "x": 0.5, "rows": [None, 1.0]}
    save_run(tmp_path, empty_frame(), summary)
    text = (tmp_path / "summary.json").read_text()

    def refuse(constant):
        raise ValueError(constant)
    back = json.loads(text, parse_constant=refuse)["summary"]
    assert back["workload"]["rate_per_s"] == "inf" and back["ttft_s"]["p50"] is None
