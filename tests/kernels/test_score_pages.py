"""score_pages (Quest bound) and select_topk: Triton (interpreter), reference and a naive bound."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tessera.kernels import dispatch
from tessera.kernels.layout import PAGE_SIZE
from tessera.kernels.score_pages import score_pages, score_pages_ref
from tests.kernels.pools import guarded, make_paged_kv

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
SCORE_TOL = {torch.float32: 1e-4, torch.float16: 2e-3, torch.bfloat16: 2e-3}  # inputs exact, fp32 sums


def naive_scores(q, minmax, tables, seq_lens):
    num_seqs, num_kv_heads, width = tables.shape
    group = q.shape[1] // num_kv_heads
    out = torch.full((num_seqs, num_kv_heads, width), float("-inf"), dtype=torch.float64)
    for b in range(num_seqs):
        for h in range(num_kv_heads):
            for p in range(width):
                blk = int(tables[b, h, p])
                if p == (int(seq_lens[b]) - 1) // PAGE_SIZE:
                    out[b, h, p] = float("inf")
                elif p * PAGE_SIZE < seq_lens[b] and 0 <= blk < minmax.shape[0]:
                    qg = q[b, h * group:(h + 1) * group].double()
                    lo, hi = minmax[blk, 0].double(), minmax[blk, 1].double()
                    out[b, h, p] = torch.maximum(qg * lo, qg * hi).sum(-1).max()
    return out


@settings(max_examples=20, deadline=None, derandomize=True)
@given(dtype=st.sampled_from(DTYPES), head_dim=st.sampled_from([64, 128]), num_kv_heads=st.integers(1, 2),
       group=st.sampled_from([1, 4, 8]), seq_lens=st.lists(st.integers(1, 300), min_size=1, max_size=3),
       seed=st.integers(0, 1000))
def test_matches_naive(dtype, head_dim, num_kv_heads, group, seq_lens, seed):
    gen = torch.Generator().manual_seed(seed)
    kv = make_paged_kv(seq_lens, num_kv_heads, head_dim, dtype, gen, extra_pages=2)
    kv.block_tables[0, 0, 0] = kv.kv_pool.shape[1]  # just past the pool (guard): -inf (unless current page)
    # Finite guard: a NaN read could vanish in the max over query heads (max ignores NaN on GPUs).
    minmax, _ = guarded((kv.kv_pool.shape[1], 2, head_dim), dtype, fill=1000.0)
    minmax.copy_(torch.randn(minmax.shape, generator=gen).sort(dim=1).values)
    q = torch.randn(len(seq_lens), num_kv_heads * group, head_dim, generator=gen).to(dtype)
    args = (q, minmax, kv.block_tables, kv.seq_lens)
    expected = naive_scores(*args)
    for scores in (score_pages(*args), score_pages_ref(*args)):
        assert scores.dtype == torch.float32
        assert torch.equal(scores.isinf(), expected.isinf())
        assert torch.equal(scores == float("inf"), expected == float("inf"))
        finite = expected.isfinite()
        torch.testing.assert_close(scores[finite].double(), expected[finite], atol=SCORE_TOL[dtype],
                                   rtol=SCORE_TOL[dtype])


def test_bound_is_an_upper_bound_on_real_logits():
    gen = torch.Generator().manual_seed(1)
    kv = make_paged_kv([90, 64], 2, 64, torch.float32, gen)
    minmax = torch.zeros(kv.kv_pool.shape[1], 2, 64)
    full = kv.block_tables[kv.block_tables >= 0]
    dispatch.update_minmax(kv.kv_pool.nan_to_num(0.0), minmax, full)
    q = torch.randn(2, 8, 64, generator=gen)
    scores = dispatch.score_pages(q, minmax, kv.block_tables, kv.seq_lens, impl="triton")
    for b, n in enumerate([90, 64]):
        for h in range(2):
            for p in range(n // PAGE_SIZE - (n % PAGE_SIZE == 0)):  # full pages before the current one
                keys = kv.kv_pool[0, kv.block_tables[b, h, p]]
                logits = q[b, h * 4:(h + 1) * 4] @ keys.T
                assert scores[b, h, p] >= logits.max() - 1e-4


def test_select_topk_pads_and_sorts():
    inf = float("inf")
    scores = torch.tensor([[[0.5, inf, -inf, 2.0, 1.0], [-inf, -inf, inf, -inf, -inf]]])
    pages = dispatch.select_topk(scores, 3)
    assert pages.dtype == torch.int32
    assert pages.tolist() == [[[1, 3, 4], [2, -1, -1]]]
    assert dispatch.select_topk(scores, 8).tolist() == [[[0, 1, 3, 4, -1, -1, -1, -1], [2] + [-1] * 7]]
    assert dispatch.select_topk(scores[:0], 4).shape == (0, 2, 4)
    assert dispatch.select_topk(scores, 0).shape == (1, 2, 0)


@pytest.mark.parametrize("impl", ["triton", "ref"])
def test_empty_batch(impl):
    out = dispatch.score_pages(torch.zeros(0, 4, 64), torch.zeros(3, 2, 64), torch.zeros(0, 1, 4, dtype=torch.int32),
                               torch.zeros(0, dtype=torch.int32), impl=impl)
    assert out.shape == (0, 1, 4)
