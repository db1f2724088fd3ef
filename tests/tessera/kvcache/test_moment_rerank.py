"""Rank totals from tabulated moments (kvpolicy.rerank_mode=moments): what a rank may return, the exact fallback for
requests that start within K pages, determinism per request, and the refusal of a rank off its schedule."""
import numpy as np
import pytest

from tessera.kvcache.head_plan import HeadMode
from tessera.kvcache.moment_rerank import MomentRerank
from tessera.kvcache.policies import make_policy
from tessera.models import model
from tessera.sim.kv_setup import truth_head_model

LLAMA = model("Llama-3.1-8B")
HEADS = truth_head_model(LLAMA)
PLAN = make_policy("flexicache", LLAMA).plan
K = PLAN.topk_pages


def sampler(request_id: int) -> MomentRerank:
    layers, heads = np.nonzero(PLAN.mode == HeadMode.OFFLOAD)
    intervals = PLAN.rerank_interval[layers, heads]
    groups = {int(r): np.flatnonzero(intervals == r) for r in np.unique(intervals)}
    return MomentRerank(HEADS.behaviour(request_id), layers, heads, groups, K, 16, 8192, HEADS.seed)


def ranks(s: MomentRerank, prompt: int, num_ranks: int, check: bool = True) -> list[tuple[int, int, int]]:
    """Rank totals of a request decoding from `prompt` tokens: its first rank at step 1, then every 16 steps;
    check: hold each rank to what a drawn rank past K pages may return."""
    m = len(s.layers)
    rows, size = np.arange(m), np.full(m, K)
    tokens = prompt + 1
    n = -(-tokens // 16)
    first = s.rank_totals(rows, n, True, np.full(m, n), np.zeros(m, dtype=np.int64), np.ones(m), 1, tokens)
    if check:  # all pages were on device: none fetched, those beyond K freed
        assert first[:3] == (0, 0, m * (n - K)) and first[3].tolist() == [K] * m
    size = first[3]
    out, last_step = [], 1
    for step in range(16, 16 * num_ranks + 1, 16):
        last, tokens = n, prompt + step
        n = -(-tokens // 16)
        promoted, fetched, freed, new_size = s.rank_totals(rows, n, False, np.full(m, last), size,
                                                           np.full(m, step - last_step), step, tokens)
        last_step = step
        shift, size = n - last, new_size
        out.append((promoted, fetched, freed))
        if not check:
            continue
        assert new_size.tolist() == [K] * m
        assert m * min(shift, 1) <= promoted - fetched <= m * shift  # tail pages kept: the current one at least
        assert freed == fetched + m * shift  # the new set holds K pages: what came in, went out (plus the tail)
        assert 0 <= fetched <= m * (K - 1)
    return out


def test_rank_totals_are_consistent_and_per_request_deterministic():
    a = ranks(sampler(5), 4000, 20)
    assert a == ranks(sampler(5), 4000, 20)  # the request's own seeded stream
    assert a != ranks(sampler(6), 4000, 20)
    assert np.mean([f for _, f, _ in a]) > 100  # most ranks fetch: the test covers the drawn path


def test_a_request_starting_within_k_pages_ranks_exactly():
    s = sampler(1)
    ranks(s, 16 * (K - 2), 10, check=False)  # its first rank keeps every page; later ones choose: page-exact draws
    assert s.exact is not None
    s.reset()
    assert s.exact is None


def test_a_rank_off_the_schedule_is_refused():
    s = sampler(2)
    m = len(s.layers)
    rows = np.arange(m)
    s.rank_totals(rows, 300, True, np.full(m, 300), np.zeros(m, dtype=np.int64), np.ones(m), 1, 4790)
    with pytest.raises(RuntimeError, match="rerank_mode=sampled"):  # 3 pages created in 15 steps: not this schedule
        s.rank_totals(rows, 303, False, np.full(m, 300), np.full(m, K), np.full(m, 15), 16, 4805)


def test_request_ranks_by_group_draw_what_rank_totals_draws():
    # past its first rank a moments request ranks through rank_groups (scalar counters, no gathers): the same draws,
    # promoted, fetched and freed pages as rank_totals over the rows' arrays
    prompt, request_id = 20_000, 9
    expected = ranks(sampler(request_id), prompt, 12, check=False)
    rk = make_policy("flexicache", LLAMA).new_request(request_id, prompt, HEADS.behaviour(request_id),
                                                      track_pages=False)
    rk.use_moment_reranks(8192, HEADS.seed)
    rk.on_prefill_done()
    got, page_bytes = [], PLAN.geometry.page_bytes
    for _ in range(16 * 12):
        s = rk.on_decode_step()
        if s.decode_step > 1 and s.decode_step % 16 == 0:
            assert rk._sampler.ranks_by_group
            # evicted pages beyond those the fetched ones reuse stay held until the copy lands: freed - fetched
            held = rk._held_pages if rk.is_reloading else None
            got.append((s.num_promoted_pages, s.h2d_bytes // page_bytes, held))
        if rk.is_reloading:
            rk.on_reload_done()
    assert got == [(p, f, fr - f if f else None) for p, f, fr in expected]


def test_successive_draws_carry_the_tables_lag_one_correlation():
    # a group's fetched pages at rank j and j + 1 correlate as its heads' do (lag-1 covariance summed over heads):
    # an AR(1) step on the deviate; variance and mean stay the table's
    from tessera.kvcache.rank_moments import RankSchedule

    s = sampler(4)
    g = s.groups[0]
    g.schedule = RankSchedule(((16, 1),), 0, 1)  # every rank reads table row 0
    g.set_sums(np.array([[5000.0, 150.0, 400.0, 100.0, 20.0, 200.0]]))  # rho = 200 / 400 = 0.5
    fetched = []
    for rank in range(1, 20_001):
        g.rank = rank
        fetched.append(s._draw(g, 0, 1)[0])
    f = np.array(fetched, dtype=float)
    assert np.corrcoef(f[1:], f[:-1])[0, 1] == pytest.approx(0.5, abs=0.03)
    assert f.var() == pytest.approx(400.0, rel=0.06) and f.mean() == pytest.approx(5000.0, abs=1.0)
    assert np.corrcoef(f[2:], f[:-2])[0, 1] == pytest.approx(0.25, abs=0.03)  # AR(1): lag 2 is rho squared
