"""Dense paged decode attention: Triton (interpreter) and the torch reference against a naive loop."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tessera.kernels import dispatch
from tessera.kernels.paged_decode_attention import paged_decode_attention, paged_decode_attention_ref
from tests.kernels.pools import assert_close, make_paged_kv, naive_attention

DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def run_both(q, kv, **kwargs):
    tri = paged_decode_attention(q, kv.kv_pool, kv.block_tables, kv.seq_lens, **kwargs)
    kwargs.pop("num_splits", None)
    ref = paged_decode_attention_ref(q, kv.kv_pool, kv.block_tables, kv.seq_lens, **kwargs)
    return tri, ref


@settings(max_examples=25, deadline=None, derandomize=True)
@given(dtype=st.sampled_from(DTYPES), head_dim=st.sampled_from([64, 128]), num_kv_heads=st.integers(1, 2),
       group=st.sampled_from([1, 4, 8]), seq_lens=st.lists(st.integers(1, 150), min_size=1, max_size=3),
       num_splits=st.sampled_from([None, 1, 3]), seed=st.integers(0, 1000))
def test_matches_naive(dtype, head_dim, num_kv_heads, group, seq_lens, num_splits, seed):
    gen = torch.Generator().manual_seed(seed)
    kv = make_paged_kv(seq_lens, num_kv_heads, head_dim, dtype, gen)
    q = torch.randn(len(seq_lens), num_kv_heads * group, head_dim, generator=gen).to(dtype)
    tri, ref = run_both(q, kv, num_splits=num_splits)
    expected = naive_attention(q, kv, head_dim ** -0.5)
    assert tri.dtype == ref.dtype == dtype
    assert_close(ref, expected, dtype)
    assert_close(tri, expected, dtype)


@settings(max_examples=14, deadline=None, derandomize=True)
@given(dtype=st.sampled_from(DTYPES), windows=st.lists(st.integers(0, 70), min_size=2, max_size=2),
       num_sinks=st.integers(0, 40), seq_lens=st.lists(st.integers(1, 200), min_size=1, max_size=2),
       per_head=st.booleans(), seed=st.integers(0, 1000))
def test_window_and_sinks(dtype, windows, num_sinks, seq_lens, per_head, seed):
    gen = torch.Generator().manual_seed(seed)
    kv = make_paged_kv(seq_lens, 2, 64, dtype, gen)
    q = torch.randn(len(seq_lens), 8, 64, generator=gen).to(dtype)
    if not per_head:
        windows = [windows[0]] * 2
    window = torch.tensor(windows, dtype=torch.int32) if per_head else windows[0]
    tri, ref = run_both(q, kv, window=window, num_sinks=num_sinks, num_splits=2, scale=0.1)
    expected = naive_attention(q, kv, 0.1, windows=windows, num_sinks=num_sinks)
    assert_close(ref, expected, dtype)
    assert_close(tri, expected, dtype)


def test_holes_and_bad_block_ids_are_skipped():
    gen = torch.Generator().manual_seed(0)
    kv = make_paged_kv([100, 37, 16], 2, 64, torch.float32, gen)
    kv.block_tables[0, 0, 2] = -1
    kv.block_tables[0, 1, 1] = kv.kv_pool.shape[1]  # just past the pool: would read the NaN guard
    kv.block_tables[1, :, :] = -1  # nothing to attend: output 0
    q = torch.randn(3, 4, 64, generator=gen)
    tri, ref = run_both(q, kv, num_splits=2)
    expected = naive_attention(q, kv, 64 ** -0.5)
    assert_close(tri, expected, torch.float32)
    assert_close(ref, expected, torch.float32)
    assert (tri[1] == 0).all() and (ref[1] == 0).all()


@pytest.mark.parametrize("seq_len", [15, 16, 17, 32, 33])
def test_page_boundaries_and_many_splits(seq_len):
    gen = torch.Generator().manual_seed(seq_len)
    kv = make_paged_kv([seq_len, 1], 1, 128, torch.float16, gen, extra_pages=3)
    q = torch.randn(2, 8, 128, generator=gen).half()
    tri, ref = run_both(q, kv, num_splits=64)  # more splits than pages: clamped, empty splits weigh 0
    expected = naive_attention(q, kv, 128 ** -0.5)
    assert_close(tri, expected, torch.float16)
    assert_close(ref, expected, torch.float16)


def test_empty_batch_and_empty_table():
    q = torch.randn(0, 4, 64)
    pool = torch.zeros(2, 3, 16, 64)
    empty = torch.zeros(0, 1, 5, dtype=torch.int32), torch.zeros(0, dtype=torch.int32)
    for impl in ("triton", "ref"):
        assert dispatch.paged_decode_attention(q, pool, *empty, impl=impl).shape == (0, 4, 64)
        no_pages = torch.zeros(2, 1, 0, dtype=torch.int32), torch.tensor([5, 1], dtype=torch.int32)
        out = dispatch.paged_decode_attention(torch.randn(2, 4, 64), pool, *no_pages, impl=impl)
        assert (out == 0).all()


def test_bad_inputs_are_named():
    pool = torch.zeros(2, 3, 16, 64)
    tables, lens = torch.zeros(1, 2, 1, dtype=torch.int32), torch.ones(1, dtype=torch.int32)
    with pytest.raises(ValueError, match="multiple of num_kv_heads"):
        dispatch.paged_decode_attention(torch.zeros(1, 3, 64), pool, tables, lens)
    with pytest.raises(ValueError, match="dtype"):
        dispatch.paged_decode_attention(torch.zeros(1, 4, 64).half(), pool, tables, lens)
    with pytest.raises(ValueError, match="int32 or int64"):
        dispatch.paged_decode_attention(torch.zeros(1, 4, 64), pool, tables.float(), lens)
    with pytest.raises(ValueError, match="head_dim"):
        dispatch.paged_decode_attention(torch.zeros(1, 4, 32), pool, tables, lens)
    with pytest.raises(ValueError, match=r"\[2, num_blocks, 16, head_dim\]"):
        dispatch.paged_decode_attention(torch.zeros(1, 4, 64), pool[:, :, :8], tables, lens)
