"""decode_step_terms: a decode span's steps summed from a few constants give iteration_time's floats exactly."""
import pytest
from hypothesis import given, settings, strategies as st

from tessera.cost import ProfiledCostModel, RooflineCostModel, RooflineEfficiency
from tessera.hardware import gpu
from tessera.interface import BatchShape
from tessera.models import model

H100, A100 = gpu("H100-SXM-80GB"), gpu("A100-SXM-80GB")
MODELS = [
    RooflineCostModel(model("Llama-2-7B"), H100),
    RooflineCostModel(model("Llama-2-70B"), A100, tp=4),  # all-reduces in the head
    RooflineCostModel(model("Mixtral-8x7B"), H100, tp=2),  # expert weight reads depend on the batch
    RooflineCostModel(model("Llama-2-7B"), H100, efficiency=RooflineEfficiency(overhead_s=0.002,
                                                                               seq_overhead_s=3e-5)),
    ProfiledCostModel(model("Llama-2-7B"), H100),
    ProfiledCostModel(model("Llama-2-70B"), H100, tp=4),
]


def step_from_terms(terms, kv: int) -> float:
    head, t0, c_flop, c_kv, seq_s, lm = terms
    compute, memory = kv * c_flop, kv * c_kv + seq_s
    return head + ((t0 + (compute if compute > memory else memory)) + lm)


@settings(max_examples=300, deadline=None)
@given(index=st.integers(0, len(MODELS) - 1), ds=st.integers(1, 512), kv_per_seq=st.integers(1, 32_000))
def test_terms_give_iteration_time_bit_for_bit(index, ds, kv_per_seq):
    cost = MODELS[index]
    kv = ds * kv_per_seq
    shape = BatchShape(decode_seqs=ds, decode_kv_tokens=kv)
    assert step_from_terms(cost.decode_step_terms(ds), kv) == cost.iteration_time(shape)


@pytest.mark.parametrize("cost", MODELS[:1] + MODELS[4:5], ids=["roofline", "profiled"])
def test_a_span_sums_the_same_with_and_without_terms(cost):
    from tessera.sim.span_times import SpanTimes

    args = (BatchShape(decode_seqs=7), 0.125, 7, 7 * 900, 300)
    plain = SpanTimes(cost.iteration_time, *args)
    plain.extend(300)
    fast = SpanTimes(cost.iteration_time, *args, terms=cost.decode_step_terms(7))
    fast.extend(5)
    fast.extend(295)
    assert fast.ends == plain.ends and fast.complete
