"""make_cost_model builds either kind from specs or names and rejects bad arguments."""
import pytest

from tessera.cost import ProfiledCostModel, RooflineCostModel, make_cost_model
from tessera.hardware import gpu
from tessera.interface import BatchShape
from tessera.models import model


def test_builds_each_kind():
    roofline = make_cost_model("roofline", model("Llama-2-7B"), gpu("H100"), tp=2)
    profiled = make_cost_model("profiled", "Llama-2-7B", "H100-SXM-80GB", 2)
    assert isinstance(roofline, RooflineCostModel) and roofline.tp == 2
    assert isinstance(profiled, ProfiledCostModel)
    batch = BatchShape(decode_seqs=16, decode_kv_tokens=16 * 1024)
    assert profiled.iteration_time(batch) == pytest.approx(roofline.iteration_time(batch), rel=0.5)


def test_efficiency_fields_pass_through():
    cost = make_cost_model("roofline", "Llama-2-7B", "H100", hbm_fraction=0.5, overhead_s=0.0)
    assert cost.efficiency.hbm_fraction == 0.5 and cost.efficiency.overhead_s == 0.0


@pytest.mark.parametrize("kind, params, error", [
    ("analytic", {}, ValueError),
    ("roofline", {"profile": "x.csv"}, TypeError),
    ("roofline", {"flops_fraction": 2.0}, ValueError),
])
def test_bad_arguments(kind, params, error):
    with pytest.raises(error):
        make_cost_model(kind, "Llama-2-7B", "H100", **params)
