"""Profiled cost model: exact at profiled points, interpolates between them, clear errors otherwise."""
import pandas as pd
import pytest

from tessera.cost import (LAYER_OPS, LayerProfile, ProfiledCostModel, RooflineCostModel,
                          vidur_profile_path)
from tessera.hardware import gpu
from tessera.interface import BatchShape, CostModel
from tessera.models import model
from tessera.paths import data_path

LLAMA2_7B = model("Llama-2-7B")
H100 = gpu("H100-SXM-80GB")
A100 = gpu("A100-SXM-80GB")
CSV = data_path("vidur-profiling", "compute", "h100", "meta-llama", "Llama-2-7b-hf", "mlp.csv")
COST = ProfiledCostModel(LLAMA2_7B, H100)


def _row_ms(num_tokens: int, tp: int = 1) -> float:
    df = pd.read_csv(CSV)
    rows = df[(df.num_tokens == num_tokens) & (df.num_tensor_parallel_workers == tp)]
    assert len(rows) == 1
    return float(sum(rows.iloc[0][f"time_stats.{op}.median"] for op in LAYER_OPS))


def test_is_a_cost_model():
    assert isinstance(COST, CostModel)


def test_matches_the_csv_exactly_at_a_profiled_point():
    assert COST.layers_time(16) == pytest.approx(32 * _row_ms(16) * 1e-3, rel=1e-12)


def test_interpolates_linearly_between_profiled_points():
    # 16 and 24 are neighbouring profiled token counts; 20 lies halfway.
    halfway = (_row_ms(16) + _row_ms(24)) / 2
    assert COST.layers_time(20) == pytest.approx(32 * halfway * 1e-3, rel=1e-12)


def test_scales_linearly_beyond_the_largest_profiled_count():
    assert COST.layers_time(8192) == pytest.approx(2 * COST.layers_time(4096), rel=1e-12)


def test_attention_and_the_rest_come_from_the_roofline():
    roofline = RooflineCostModel(LLAMA2_7B, H100)
    batch = BatchShape(prefill_tokens=100, prefill_attn_pairs=5050.0, decode_seqs=8,
                       decode_kv_tokens=8000.0)
    rest = roofline.iteration_time(batch) - roofline.linear_time(108)
    assert COST.iteration_time(batch) == pytest.approx(COST.layers_time(108) + rest, rel=1e-12)


def test_tp_adds_the_measured_all_reduce():
    sharded = ProfiledCostModel(LLAMA2_7B, H100, tp=2)
    assert sharded.layers_time(16) > 32 * _row_ms(16, tp=2) * 1e-3
    assert sharded.layers_time(16) < COST.layers_time(16)


def test_same_layer_shape_reuses_a_profile():
    # Llama-3.1-8B and the R1 distill have Meta-Llama-3-8B's layers; A100 has that profile.
    base = ProfiledCostModel(model("Llama-3-8B"), A100)
    distill = ProfiledCostModel(model("DeepSeek-R1-Distill-Llama-8B"), A100)
    assert distill.layers_time(300) == base.layers_time(300)
    assert vidur_profile_path(model("Llama-3.1-8B"), A100).parent.name == "Meta-Llama-3-8B"


def test_unprofiled_combination_lists_the_available_ones():
    with pytest.raises(KeyError, match="Llama-2-7B on H100-SXM-80GB"):
        ProfiledCostModel(model("Qwen2.5-7B"), H100)
    with pytest.raises(KeyError, match="profiled"):
        ProfiledCostModel(LLAMA2_7B, gpu("L40S"))


def test_profile_of_another_shape_is_rejected():
    with pytest.raises(ValueError, match="n_embd"):
        ProfiledCostModel(model("Qwen2.5-7B"), H100, profile=CSV)


def test_unprofiled_tp_lists_the_profiled_ones():
    with pytest.raises(ValueError, match=r"\[1, 2, 4, 8\]"):
        LayerProfile.from_table(CSV, tp=16)
