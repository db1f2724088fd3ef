"""Comparing two profiles: list overlap as the paper measures it, TS rank agreement, and refusal of tables
that cover different heads."""
import pandas as pd
import pytest

from tessera.runtime.profiling.compare import compare_profiles


def table(ts, unstable):
    return pd.DataFrame({"layer": [0, 0, 1, 1], "kv_head": [0, 1, 0, 1], "ts_mean": ts, "unstable": unstable})


def test_overlap_and_rank_agreement():
    a = table([0.2, 0.5, 0.3, 0.9], [True, False, True, False])
    b = table([0.25, 0.4, 0.6, 0.8], [True, True, False, False])
    result = compare_profiles(a, b)
    assert result["list_overlap"] == 0.5 and result["only_a"] == [[1, 0]] and result["only_b"] == [[0, 1]]
    assert result["ts_spearman"] == pytest.approx(0.8)
    assert compare_profiles(a, a)["list_overlap"] == 1.0


def test_different_heads_are_refused():
    with pytest.raises(ValueError, match="different heads"):
        compare_profiles(table([0.1] * 4, [True] * 4), table([0.1] * 4, [True] * 4).iloc[:3])
