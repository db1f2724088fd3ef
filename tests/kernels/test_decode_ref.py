"""The chunked torch reference (decode_ref) against its one-shot oracle, with budgets shrunk so that
every path runs: several chunks per row, several chunk rows per block, padded rows and columns."""
from unittest import mock

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tessera.kernels import _decode_common
from tessera.kernels._decode_common import decode_oracle, decode_ref
from tessera.kernels.layout import PAGE_SIZE
from tests.kernels.pools import assert_close, make_paged_kv, naive_attention

DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def page_lists(kv, gen: torch.Generator, holes: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(blocks, pages) [B, H, W]: every page of the table in a random order, some dropped (-1)."""
    num_seqs, num_kv_heads, width = kv.block_tables.shape
    pages = torch.stack([torch.randperm(width, generator=gen) for _ in range(num_seqs * num_kv_heads)])
    pages = pages.view(num_seqs, num_kv_heads, width)
    if holes:
        pages = torch.where(torch.rand(pages.shape, generator=gen) < 0.3, -1, pages)
    blocks = torch.gather(kv.block_tables.long(), 2, pages.clamp(min=0))
    return torch.where(pages >= 0, blocks, -1), pages


@settings(max_examples=40, deadline=None, derandomize=True)
@given(dtype=st.sampled_from(DTYPES), num_kv_heads=st.integers(1, 3), group=st.sampled_from([1, 4]),
       seq_lens=st.lists(st.integers(1, 120), min_size=1, max_size=4), holes=st.booleans(),
       windowed=st.booleans(), chunk_pages=st.integers(1, 6), score_pages=st.integers(1, 12),
       seed=st.integers(0, 1000))
def test_chunked_matches_oracle(dtype, num_kv_heads, group, seq_lens, holes, windowed, chunk_pages,
                                score_pages, seed):
    gen = torch.Generator().manual_seed(seed)
    head_dim = 64
    kv = make_paged_kv(seq_lens, num_kv_heads, head_dim, dtype, gen, extra_pages=2)
    q = torch.randn(len(seq_lens), num_kv_heads * group, head_dim, generator=gen).to(dtype)
    blocks, pages = page_lists(kv, gen, holes)
    args = (q, kv.kv_pool, blocks, pages, kv.seq_lens, 0.2)
    if windowed:
        lo = torch.randint(0, 100, (len(seq_lens), num_kv_heads), generator=gen)
        sinks = torch.randint(0, 20, (len(seq_lens), num_kv_heads), generator=gen)
        args += (lo, sinks)
    budgets = {"REF_CHUNK_BYTES": chunk_pages * PAGE_SIZE * head_dim * 4, "MIN_CHUNK_COLS": 1,
               "REF_SCORE_BYTES": score_pages * PAGE_SIZE * 4, "REF_ONE_SHOT_BYTES": 0}
    with mock.patch.multiple(_decode_common, **budgets):
        out = decode_ref(*args)
    expected = decode_oracle(*args)
    assert out.dtype == dtype and not out.isnan().any()
    assert_close(out, expected, dtype)


def test_oracle_matches_naive():
    gen = torch.Generator().manual_seed(1)
    kv = make_paged_kv([40, 3, 77], 2, 64, torch.float32, gen)
    q = torch.randn(3, 8, 64, generator=gen)
    width = kv.block_tables.shape[2]
    pages = torch.arange(width).expand(3, 2, width)
    out = decode_oracle(q, kv.kv_pool, kv.block_tables, pages, kv.seq_lens, 0.125)
    assert_close(out, naive_attention(q, kv, 0.125), torch.float32)


def test_row_with_nothing_visible_is_zero_among_others():
    gen = torch.Generator().manual_seed(2)
    kv = make_paged_kv([50, 50], 2, 64, torch.float32, gen)
    q = torch.randn(2, 8, 64, generator=gen)
    pages = torch.arange(kv.block_tables.shape[2]).expand(2, 2, -1).clone()
    pages[1, 0] = -1  # (seq 1, KV head 0): nothing; its pool slots are NaN-guarded neighbours
    blocks = torch.where(pages >= 0, kv.block_tables.long(), -1)
    with mock.patch.multiple(_decode_common, REF_CHUNK_BYTES=2 * PAGE_SIZE * 64 * 4, MIN_CHUNK_COLS=1,
                             REF_ONE_SHOT_BYTES=0):
        out = decode_ref(q, kv.kv_pool, blocks, pages, kv.seq_lens, 0.125)
    assert (out[1, :4] == 0).all() and not out.isnan().any()
    assert_close(out, decode_oracle(q, kv.kv_pool, blocks, pages, kv.seq_lens, 0.125), torch.float32)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(num_kv_heads=st.integers(1, 3), group=st.sampled_from([1, 3, 4]),
       seq_lens=st.lists(st.integers(1, 120), min_size=1, max_size=4), hole=st.booleans(),
       chunk_pages=st.integers(1, 6), score_pages=st.integers(1, 12), seed=st.integers(0, 1000),
       one_shot=st.booleans())
def test_dense_matches_oracle(num_kv_heads, group, seq_lens, hole, chunk_pages, score_pages, seed, one_shot):
    """dense_decode_ref (every page in order, masks from the lengths) in chunks or in one shot, padded, ragged;
    a missing block where a sequence has tokens takes decode_ref's path. The pool's unused slots hold NaN."""
    gen = torch.Generator().manual_seed(seed)
    kv = make_paged_kv(seq_lens, num_kv_heads, 64, torch.float32, gen, extra_pages=2)
    q = torch.randn(len(seq_lens), num_kv_heads * group, 64, generator=gen)
    tables = kv.block_tables.clone()
    if hole:
        tables[0, 0, 0] = -1
    pages = torch.arange(tables.shape[2]).expand(len(seq_lens), num_kv_heads, -1)
    budgets = {"REF_CHUNK_BYTES": chunk_pages * PAGE_SIZE * 64 * 4, "MIN_CHUNK_COLS": 1,
               "REF_SCORE_BYTES": score_pages * PAGE_SIZE * 4, "REF_ONE_SHOT_BYTES": 0,
               "DENSE_ONE_SHOT_BYTES": 1 << 30 if one_shot else 0}
    with mock.patch.multiple(_decode_common, **budgets):
        out = _decode_common.dense_decode_ref(q, kv.kv_pool, tables, kv.seq_lens, 0.2)
    expected = decode_oracle(q, kv.kv_pool, torch.where(tables >= 0, tables.long(), -1), pages, kv.seq_lens, 0.2)
    assert not out.isnan().any()
    assert_close(out, expected, torch.float32)
