"""Tabulated rerank moments: the rank schedule a first rank implies, the interpolation weights, and the table's
per-head means against the head model's own page-id sets (HeadBehaviour.select, an independent implementation)."""
import numpy as np
import pytest

from tessera.kvcache.head_model import HeadBehaviour, default_params
from tessera.kvcache.rank_moments import (BURN_IN_RANKS, STATS, RankMomentTable, RankSchedule, _interp_weights, _table,
                                          table)


def test_schedule_of_a_fixed_interval():
    # first rank at decode step 1 with 3,001 tokens (page 188 holds 9 of them): ranks at steps 16, 32, ...
    s = RankSchedule.of(16, 16, 1, 3001)
    assert s.steps[0] == (15, 1) and set(s.steps[1:]) == {(16, 1)}
    assert s.period == 1 and len(s.steps) == BURN_IN_RANKS + 1
    # 1,009 tokens start page 64: 15 steps later the tokens still fit in it, so the first rank adds no page
    assert RankSchedule.of(16, 16, 1, 1009).steps[:2] == ((15, 0), (16, 1))
    # every 8 steps a page is created every other rank: a period of two
    s = RankSchedule.of(8, 16, 1, 3001)
    assert s.period == 2
    assert [shift for _, shift in s.steps] == [0, 1, 0, 1, 0, 1, 0, 1]
    assert s.index(len(s.steps) + 1) == BURN_IN_RANKS and s.index(len(s.steps) + 2) == BURN_IN_RANKS + 1
    assert s.index(3) == 2


def test_interpolation_weights():
    grid = np.array([0.0, 1.0, 3.0])
    w = _interp_weights(grid, np.array([0.5, 2.0, 3.0, -4.0, 9.0]))
    assert w.sum(1).tolist() == [1.0] * 5
    assert w[0].tolist() == [0.5, 0.5, 0.0] and w[1].tolist() == [0.0, 0.5, 0.5]
    assert w[2].tolist() == [0.0, 0.0, 1.0] and w[3].tolist() == [1.0, 0.0, 0.0] and w[4].tolist() == [0.0, 0.0, 1.0]


def test_pages_weights_interpolate_in_inverse_pages():
    """A first rank's page-grid weights: linear in 1 / pages between the two grid points around it, one-hot on a grid
    point, clipped at both ends of the grid."""
    grid = np.array([20, 40, 64, 128, 256, 512, 1024, 2048, 4096, 8192])
    t = RankMomentTable(None, np.zeros(3), grid, None)
    w = t.pages_weights(48)
    on_40 = (1 / 48 - 1 / 64) / (1 / 40 - 1 / 64)
    assert np.flatnonzero(w).tolist() == [1, 2]
    assert w[1] == pytest.approx(on_40, rel=1e-12) and w[2] == pytest.approx(1 - on_40, rel=1e-12)
    assert t.pages_weights(64).tolist() == [0.0, 0.0, 1.0] + [0.0] * 7
    assert t.pages_weights(10**6)[-1] == 1.0 and t.pages_weights(1)[0] == 1.0  # clipped to the grid


def select_trajectory(keep: float, heads: int, n0: int, schedule: RankSchedule, k: int, seed: int):
    """Per rank after the first: (fetched, tail kept) of each head, from page-id sets (HeadBehaviour.select)."""
    params = default_params()
    behaviour = HeadBehaviour(np.full((1, heads), keep), params, np.random.default_rng(seed))
    layers, ids = np.zeros(heads, dtype=np.int64), np.arange(heads)
    ones = np.ones(heads, dtype=np.int64)
    sets = behaviour.select(1, n0, layers, ids, None, ones, k)
    n, out = n0, []
    for since, shift in schedule.steps:
        a, n = n, n + shift
        new = behaviour.select(0, n, layers, ids, sets, since * ones, k)
        on_device = np.zeros((heads, n), dtype=bool)
        np.put_along_axis(on_device, sets.astype(np.int64), True, axis=1)
        on_device[:, a:] = True  # the tail: pages created since the last rank
        hit = np.take_along_axis(on_device, new.astype(np.int64), axis=1)
        out.append(((~hit).sum(1), (new >= a).sum(1)))
        sets = new
    return out


@pytest.mark.parametrize("interval", [16, 8])
def test_table_means_match_page_id_sets(interval):
    params, k = default_params(), 64
    schedule = RankSchedule.of(interval, 16, 1, 4001)
    t = table(params, k, schedule, 4096, seed=0)
    g, i = len(t.log_churn) // 2, 2  # a mid-range churn, a grid page count
    keep, n0 = 1.0 - float(np.exp(t.log_churn[g])), int(t.first_pages[i])
    oracle = select_trajectory(keep, 600, n0, schedule, k, seed=1)
    fetched = np.array([f for f, _ in oracle])  # [ranks, heads]
    tail = np.array([tt for _, tt in oracle])
    # pooled over the ranks: the table's mean (64 replicates) vs 600 page-id heads, within 4 standard errors
    se = np.sqrt(fetched.var(1) / 600 + t.stats["var_fetched"][:, i, g] / 64).mean()
    assert t.stats["mean_fetched"][:, i, g].mean() == pytest.approx(fetched.mean(), abs=4 * se)
    assert fetched.mean() > 1  # the comparison has something to compare
    se_tail = np.sqrt(tail.var(1) / 600 + t.stats["var_tail"][:, i, g] / 64).mean() + 1e-9
    assert t.stats["mean_tail"][:, i, g].mean() == pytest.approx(tail.mean(), abs=4 * se_tail)


def test_table_is_deterministic_and_cached():
    schedule = RankSchedule.of(16, 16, 1, 3001)
    a = table(default_params(), 64, schedule, 2000, seed=3)
    assert table(default_params(), 64, schedule, 2000, seed=3) is a
    _table.cache_clear()
    b = table(default_params(), 64, schedule, 2000, seed=3)
    assert b is not a and all(np.array_equal(a.stats[name], b.stats[name]) for name in STATS)
    other = table(default_params(), 64, schedule, 2000, seed=4)
    assert not np.array_equal(other.stats["mean_fetched"], a.stats["mean_fetched"])
