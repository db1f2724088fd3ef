"""The recorded-trace format: save/load round trip and exact replay through RequestKV."""
import numpy as np
import pytest

from tessera.kvcache import RequestKV, TopKTrace, TraceTopK, make_policy
from tessera.kvcache.head_model import HeadModel, HeadModelParams

from .helpers import TINY


def test_round_trip(tmp_path):
    trace = HeadModel(HeadModelParams(), 3, 4, seed=0).simulate_trace(0, 300, 20, 8)
    trace.save(tmp_path / "t.npz")
    back = TopKTrace.load(tmp_path / "t.npz")
    assert np.array_equal(back.topk, trace.topk) and back.prompt_len == 300 and back.page_tokens == 16
    assert np.array_equal(back.num_pages, trace.num_pages)


def test_num_pages_defaults_to_the_documented_formula(tmp_path):
    np.savez(tmp_path / "min.npz", topk=np.zeros((3, 1, 1, 2), dtype=np.int32), prompt_len=np.int64(31))
    assert TopKTrace.load(tmp_path / "min.npz").num_pages.tolist() == [2, 3, 3]


def test_replay_reproduces_the_recorded_sets_at_each_rerank():
    trace = HeadModel(HeadModelParams(), 3, 4, seed=4).simulate_trace(0, 400, 40, 8)
    policy = make_policy("flexicache", TINY, topk_pages=8, rerank_interval=4, unstable_heads=((0, 0),))
    rk = policy.new_request(0, 400, TraceTopK(trace))
    rk.on_prefill_done()
    for n in range(1, 41):
        rk.on_decode_step()
        if n == 1 or n % 4 == 0:
            for l, h in [(0, 1), (2, 3)]:
                assert set(rk.topk_pages(l, h)) == set(trace.topk[n - 1, l, h])
        if rk.is_reloading:
            rk.on_reload_done()
    with pytest.raises(ValueError, match="decode steps 1..40"):
        for _ in range(4):
            rk.on_decode_step()
