"""Roofline cost model: a back-of-envelope check, monotonicity, TP scaling and input validation."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tessera.cost import RooflineCostModel, RooflineEfficiency
from tessera.cost.roofline import LOGIT_BYTES
from tessera.hardware import gpu, link
from tessera.interface import BatchShape, CostModel
from tessera.models import model

LLAMA2_7B = model("Llama-2-7B")
H100 = gpu("H100-SXM-80GB")
NO_OVERHEAD = RooflineEfficiency(overhead_s=0.0)
COST = RooflineCostModel(LLAMA2_7B, H100, efficiency=NO_OVERHEAD)


def test_is_a_cost_model():
    assert isinstance(COST, CostModel)


def test_batch1_decode_reads_the_weights_once():
    # Batch 1, one token of context: memory-bound, ~ weights / (HBM bandwidth * efficiency).
    # 13.5 GB / (3.35 TB/s * 0.8) = 5.03 ms; the unread embedding table makes it ~2% less.
    t = COST.iteration_time(BatchShape(decode_seqs=1, decode_kv_tokens=1))
    expected = LLAMA2_7B.weight_bytes / (H100.hbm_bandwidth_Bps * NO_OVERHEAD.hbm_fraction)
    assert t == pytest.approx(expected, rel=0.05)


def test_overhead_is_added_once_per_iteration():
    with_overhead = RooflineCostModel(LLAMA2_7B, H100, efficiency=RooflineEfficiency(overhead_s=2e-3))
    batch = BatchShape(decode_seqs=4, decode_kv_tokens=4000)
    assert with_overhead.iteration_time(batch) - COST.iteration_time(batch) == pytest.approx(2e-3)


def test_large_prefill_is_compute_bound():
    n = 4096
    t = COST.linear_time(n)
    flops = 2 * n * 32 * (4 * 4096**2 + 3 * 4096 * 11008)
    assert t > flops / (H100.peak_bf16_flops * NO_OVERHEAD.flops_fraction)


def test_every_prompt_of_a_prefill_step_takes_one_lm_head_token():
    # 3 prompts of 100 tokens: 3 logits rows (vLLM v1 takes each scheduled request's last token), memory-bound
    one, three = (COST.iteration_time(BatchShape(prefill_tokens=300, prefill_seqs=n, prefill_attn_pairs=15150.0))
                  for n in (1, 3))
    logits_row_s = LLAMA2_7B.vocab_size * LOGIT_BYTES / (H100.hbm_bandwidth_Bps * NO_OVERHEAD.hbm_fraction)
    assert three - one == pytest.approx(2 * logits_row_s)


def test_empty_batch_costs_nothing():
    assert COST.iteration_time(BatchShape()) == 0.0


counts = st.integers(min_value=0, max_value=8192)


@settings(max_examples=200, deadline=None)
@given(pf=counts, ds=st.integers(0, 512), kv=st.floats(0, 1e7), pairs=st.floats(0, 1e8),
       more=st.integers(1, 1024), extra_kv=st.floats(1, 1e6))
def test_time_grows_with_tokens_and_kv(pf, ds, kv, pairs, more, extra_kv):
    def time(pf=pf, pairs=pairs, ds=ds, kv=kv):
        return COST.iteration_time(BatchShape(prefill_tokens=pf, prefill_attn_pairs=pairs,
                                              decode_seqs=ds, decode_kv_tokens=kv))

    t = time()
    assert time(pf=pf + more) >= t
    assert time(ds=ds + more) >= t
    assert time(pairs=pairs + extra_kv * 100) >= t
    if ds:
        assert time(kv=kv + extra_kv) > t


@pytest.mark.parametrize("tp", [2, 4, 8])
@pytest.mark.parametrize("num_tokens", [1, 64, 2048])
def test_tensor_parallelism_reduces_linear_time(tp, num_tokens):
    sharded = RooflineCostModel(LLAMA2_7B, H100, tp=tp, efficiency=NO_OVERHEAD)
    assert sharded.linear_time(num_tokens) < COST.linear_time(num_tokens)


def test_tensor_parallelism_pays_all_reduces():
    sharded = RooflineCostModel(LLAMA2_7B, H100, tp=2, efficiency=NO_OVERHEAD)
    assert COST.all_reduce_time(512) == 0.0
    assert sharded.all_reduce_time(512) > 0.0
    big_prefill = BatchShape(prefill_tokens=4096, prefill_attn_pairs=4096 * 4097 / 2)
    assert sharded.iteration_time(big_prefill) < COST.iteration_time(big_prefill)


def test_transfer_time_is_latency_plus_bytes_over_bandwidth():
    pcie = link("PCIe-Gen5-x16")
    assert COST.transfer_time(63e9, pcie) == pytest.approx(pcie.latency_s + 1.0)
    assert COST.transfer_time(0, pcie) == 0.0
    with pytest.raises(ValueError, match="num_bytes"):
        COST.transfer_time(-1, pcie)


@pytest.mark.parametrize("batch", [
    BatchShape(prefill_tokens=-1),
    BatchShape(decode_seqs=2, decode_kv_tokens=-5.0),
    BatchShape(prefill_tokens=8, prefill_attn_pairs=-1.0),
    BatchShape(extra_hbm_bytes=-1.0),
])
def test_negative_batch_counters_are_rejected(batch):
    with pytest.raises(ValueError, match="must be >= 0"):
        COST.iteration_time(batch)


@pytest.mark.parametrize("field, value", [("flops_fraction", 0.0), ("flops_fraction", 1.5),
                                          ("hbm_fraction", -0.1), ("overhead_s", -1e-3), ("hbm_fraction", "abc"),
                                          ("overhead_s", float("nan")), ("seq_overhead_s", True)])
def test_efficiency_validation_names_the_field(field, value):
    with pytest.raises(ValueError, match=f"RooflineEfficiency.{field}"):
        RooflineEfficiency(**{field: value})


@pytest.mark.parametrize("tp", [0, 3, -2])
def test_tp_must_divide_the_heads(tp):
    with pytest.raises(ValueError, match="tp"):
        RooflineCostModel(LLAMA2_7B, H100, tp=tp)
