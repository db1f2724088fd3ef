"""Generic profile tables (what the runtime will write): the accepted formats and their errors."""
import pandas as pd
import pytest

from tessera.cost import LayerProfile, ProfiledCostModel
from tessera.hardware import gpu
from tessera.models import model


def test_two_column_table():
    table = pd.DataFrame({"num_tokens": [1, 100, 100, 1000], "time_ms": [0.1, 0.2, 0.4, 2.0]})
    profile = LayerProfile.from_table(table)
    assert profile.num_tokens == (1, 100, 1000)
    assert profile.time_s == pytest.approx((1e-4, 3e-4, 2e-3))  # duplicates averaged


def test_long_table_sums_ops_on_the_union_of_token_counts():
    table = pd.DataFrame({"op": ["mlp", "mlp", "qkv", "qkv"], "num_tokens": [1, 100, 1, 50],
                          "time_ms": [1.0, 2.0, 0.5, 1.0]})
    profile = LayerProfile.from_table(table)
    assert profile.num_tokens == (1, 50, 100)
    # at 100 tokens qkv scales linearly past its last point: 1.0 * 100 / 50
    assert profile.time_s == pytest.approx((1.5e-3, (1 + 49 / 99) * 1e-3 + 1e-3, 4e-3))


def test_tp_column_selects_rows(tmp_path):
    path = tmp_path / "profile.csv"
    pd.DataFrame({"num_tokens": [1, 1], "time_ms": [1.0, 0.6], "tp": [1, 2]}).to_csv(path, index=False)
    assert LayerProfile.from_table(path, tp=2).time_s == (0.6e-3,)
    with pytest.raises(ValueError, match=r"profiled TP degrees: \[1, 2\]"):
        LayerProfile.from_table(path, tp=4)


def test_runtime_profile_drives_the_cost_model():
    table = pd.DataFrame({"num_tokens": [1, 1024], "time_ms": [0.2, 1.0]})
    cost = ProfiledCostModel(model("Qwen2.5-7B"), gpu("L40S"), profile=table)
    assert cost.layers_time(1) == pytest.approx(28 * 0.2e-3)


@pytest.mark.parametrize("table, message", [
    (pd.DataFrame({"tokens": [1], "time_ms": [1.0]}), "no num_tokens column"),
    (pd.DataFrame({"num_tokens": [1], "latency": [1.0]}), "expected Vidur"),
    (pd.DataFrame({"num_tokens": [0], "time_ms": [1.0]}), "num_tokens must be >= 1"),
])
def test_malformed_tables_are_rejected(table, message):
    with pytest.raises(ValueError, match=message):
        LayerProfile.from_table(table)
