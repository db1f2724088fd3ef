"""RCO and TS (flexicache.md §1.1), the head model's drift, and profiling of unstable heads (§1.2)."""
import numpy as np
import pytest

from tessera.kvcache.head_model import HeadModel, HeadModelParams
from tessera.kvcache.stability import (keep_prob_of_ts, overlap_count, profile_unstable_heads, rco,
                                       temporal_stability, ts_of_keep_prob)


def test_rco_of_identical_sets_is_one():
    s = np.arange(64)[None]
    assert rco(s, s, 64, 1000)[0] == 1.0


def test_rco_of_independent_random_sets_is_about_zero():
    rng = np.random.default_rng(0)
    a = np.stack([rng.permutation(500)[:64] for _ in range(2000)])
    b = np.stack([rng.permutation(500)[:64] for _ in range(2000)])
    assert rco(a, b, 64, 500).mean() < 0.03
    assert overlap_count(a, b).mean() == pytest.approx(64 * 64 / 500, rel=0.05)  # hypergeometric mean


def test_rco_of_disjoint_sets_is_zero_and_needs_more_pages_than_k():
    assert rco(np.arange(8)[None], np.arange(8, 16)[None], 8, 100)[0] == 0.0
    with pytest.raises(ValueError, match="N_t > K"):
        rco(np.arange(8)[None], np.arange(8)[None], 8, 8)


def test_head_model_rco_decays_as_keep_prob_to_the_distance():
    params = HeadModelParams(head_spread=0.0, task_spread=0.0, request_spread=0.0,
                             stable_log_churn_mean=np.log(0.05), unstable_fraction=0.0)
    hm = HeadModel(params, 2, 4, seed=1)
    trace = hm.simulate_trace(0, 8_000, 40, 32)
    ts = temporal_stability(trace, 0)
    # RCO(d) ~= p**d, not exactly: refills avoid the current set and favour recent pages
    assert ts.mean() == pytest.approx(ts_of_keep_prob(0.95), abs=0.06)
    assert keep_prob_of_ts(ts_of_keep_prob(0.9)) == pytest.approx(0.9, abs=1e-4)


def test_profiling_recovers_the_unstable_class():
    hm = HeadModel(HeadModelParams(task_spread=0.2), 4, 8, seed=2)
    traces = [hm.simulate_trace(r, 6_000, 64, 32) for r in range(2)]
    profile = profile_unstable_heads(traces, 0.25, k=32)
    truth = {(int(l), int(h)) for l, h in zip(*np.nonzero(hm.unstable))}
    assert len(profile.unstable_heads) == 8 and set(profile.unstable_heads) == truth
    assert profile.recall > 0.9 > profile.random_recall
