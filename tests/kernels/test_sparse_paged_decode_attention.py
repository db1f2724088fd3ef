"""Sparse paged decode attention over per-head page lists: Triton (interpreter), reference, naive."""
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tessera.kernels import dispatch
from tessera.kernels.paged_decode_attention import paged_decode_attention_ref
from tessera.kernels.sparse_paged_decode_attention import (sparse_paged_decode_attention,
                                                           sparse_paged_decode_attention_ref)
from tests.kernels.pools import assert_close, make_paged_kv, naive_attention

DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def random_page_lists(kv, k: int, gen: torch.Generator) -> torch.Tensor:
    """[B, H, k] lists of distinct pages of different lengths, -1 anywhere, some out of the table."""
    num_seqs, num_kv_heads, width = kv.block_tables.shape
    pages = torch.full((num_seqs, num_kv_heads, k), -1, dtype=torch.int32)
    for b in range(num_seqs):
        for h in range(num_kv_heads):
            candidates = torch.randperm(width + 2, generator=gen)[:k]  # width, width + 1: out of range
            keep = torch.rand(len(candidates), generator=gen) < 0.8
            pages[b, h, :len(candidates)] = torch.where(keep, candidates, -1)
    return pages


@settings(max_examples=25, deadline=None, derandomize=True)
@given(dtype=st.sampled_from(DTYPES), head_dim=st.sampled_from([64, 128]), num_kv_heads=st.integers(1, 2),
       group=st.sampled_from([1, 4, 8]), seq_lens=st.lists(st.integers(1, 200), min_size=1, max_size=3),
       k=st.integers(1, 16), num_splits=st.sampled_from([None, 1, 3]), seed=st.integers(0, 1000))
def test_matches_naive(dtype, head_dim, num_kv_heads, group, seq_lens, k, num_splits, seed):
    gen = torch.Generator().manual_seed(seed)
    kv = make_paged_kv(seq_lens, num_kv_heads, head_dim, dtype, gen)
    q = torch.randn(len(seq_lens), num_kv_heads * group, head_dim, generator=gen).to(dtype)
    pages = random_page_lists(kv, k, gen)
    args = (q, kv.kv_pool, kv.block_tables, kv.seq_lens, pages)
    tri = sparse_paged_decode_attention(*args, num_splits=num_splits)
    ref = sparse_paged_decode_attention_ref(*args)
    expected = naive_attention(q, kv, head_dim ** -0.5, pages=pages)
    assert_close(ref, expected, dtype)
    assert_close(tri, expected, dtype)


def test_every_page_selected_equals_dense():
    gen = torch.Generator().manual_seed(3)
    kv = make_paged_kv([70, 5, 129], 2, 64, torch.float32, gen)
    q = torch.randn(3, 8, 64, generator=gen)
    scores = dispatch.score_pages(q, torch.zeros(kv.kv_pool.shape[1], 2, 64), kv.block_tables, kv.seq_lens)
    pages = dispatch.select_topk(scores, 50)  # K larger than the number of pages
    dense = paged_decode_attention_ref(q, kv.kv_pool, kv.block_tables, kv.seq_lens)
    for impl in ("triton", "ref"):
        out = dispatch.sparse_paged_decode_attention(q, kv.kv_pool, kv.block_tables, kv.seq_lens, pages, impl=impl)
        assert_close(out, dense, torch.float32)


def test_empty_batch_and_empty_lists():
    pool = torch.zeros(2, 3, 16, 64)
    for impl in ("triton", "ref"):
        out = dispatch.sparse_paged_decode_attention(
            torch.randn(0, 4, 64), pool, torch.zeros(0, 1, 2, dtype=torch.int32),
            torch.zeros(0, dtype=torch.int32), torch.zeros(0, 1, 4, dtype=torch.int32), impl=impl)
        assert out.shape == (0, 4, 64)
        out = dispatch.sparse_paged_decode_attention(
            torch.randn(1, 4, 64), pool, torch.zeros(1, 1, 2, dtype=torch.int32),
            torch.tensor([20], dtype=torch.int32), torch.full((1, 1, 3), -1, dtype=torch.int32), impl=impl)
        assert (out == 0).all()


def test_pages_past_a_narrow_table_are_skipped():
    # The table covers 3 pages of a 100-token sequence; listed pages 3..5 have no column: skipped.
    gen = torch.Generator().manual_seed(5)
    kv = make_paged_kv([100], 2, 64, torch.float32, gen)
    kv.block_tables = kv.block_tables[:, :, :3].contiguous()
    q = torch.randn(1, 8, 64, generator=gen)
    pages = torch.tensor([[[0, 3, 4, 5], [5, 4, 2, -1]]], dtype=torch.int32)
    expected = naive_attention(q, kv, 64 ** -0.5, pages=pages)
    for impl in ("triton", "ref"):
        out = dispatch.sparse_paged_decode_attention(q, kv.kv_pool, kv.block_tables, kv.seq_lens, pages, impl=impl)
        assert_close(out, expected, torch.float32)
