"""write_kv: Triton (interpreter) and reference scatter the same rows and touch nothing else."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tessera.kernels import dispatch
from tessera.kernels.layout import PAGE_SIZE, slot_mapping
from tessera.kernels.write_kv import write_kv, write_kv_ref
from tests.kernels.pools import guarded, guards_intact

DTYPES = [torch.float32, torch.float16, torch.bfloat16]


@settings(max_examples=20, deadline=None, derandomize=True)
@given(dtype=st.sampled_from(DTYPES), head_dim=st.sampled_from([64, 128]), num_kv_heads=st.integers(1, 5),
       num_tokens=st.integers(0, 40), strided=st.booleans(), seed=st.integers(0, 1000))
def test_triton_matches_ref(dtype, head_dim, num_kv_heads, num_tokens, strided, seed):
    gen = torch.Generator().manual_seed(seed)
    num_blocks = 8
    # Distinct slots (heads never share a page); some tokens skipped (-1) or out of the pool.
    num_blocks = max(num_blocks, num_tokens * num_kv_heads // PAGE_SIZE + 1)
    slots = torch.randperm(num_blocks * PAGE_SIZE, generator=gen)[:num_tokens * num_kv_heads]
    slots = slots.view(num_tokens, num_kv_heads)
    slots[torch.rand(slots.shape, generator=gen) < 0.15] = -1
    slots[torch.rand(slots.shape, generator=gen) < 0.05] = num_blocks * PAGE_SIZE + 3
    qkv = torch.randn(num_tokens, 3 * num_kv_heads, head_dim, generator=gen).to(dtype)
    k, v = (qkv[:, :num_kv_heads], qkv[:, num_kv_heads:2 * num_kv_heads]) if strided else \
        (qkv[:, :num_kv_heads].contiguous(), qkv[:, num_kv_heads:2 * num_kv_heads].contiguous())
    pools = []
    for fn in (write_kv, write_kv_ref):
        pool, buf = guarded((2, num_blocks, PAGE_SIZE, head_dim), dtype, fill=7.0)
        fn(pool, k, v, slots.to(torch.int32))
        assert guards_intact(buf, fill=7.0)
        pools.append(pool)
    assert torch.equal(pools[0], pools[1])
    flat = pools[1].view(2, -1, head_dim)
    t, h = torch.nonzero((slots >= 0) & (slots < num_blocks * PAGE_SIZE), as_tuple=True)
    assert torch.equal(flat[0, slots[t, h]], k[t, h]) and torch.equal(flat[1, slots[t, h]], v[t, h])


def test_decode_step_through_slot_mapping():
    # Two requests, 2 KV heads, each head with its own pages; write the token at position 17.
    tables = torch.tensor([[[0, 3], [1, 4]], [[2, 5], [6, 7]]], dtype=torch.int32)
    slots = slot_mapping(tables, torch.tensor([0, 1]), torch.tensor([17, 17]))
    assert slots.tolist() == [[3 * 16 + 1, 4 * 16 + 1], [5 * 16 + 1, 7 * 16 + 1]]
    k, v = torch.randn(2, 2, 64), torch.randn(2, 2, 64)
    for impl in ("triton", "ref"):
        pool = torch.zeros(2, 8, 16, 64)
        dispatch.write_kv(pool, k, v, slots, impl=impl)
        assert torch.equal(pool[0, 7, 1], k[1, 1]) and torch.equal(pool[1, 3, 1], v[0, 0])
        assert int((pool != 0).any(-1).sum()) == 8


def test_bad_inputs_are_named():
    pool = torch.zeros(2, 4, 16, 64)
    k = torch.zeros(3, 2, 64)
    with pytest.raises(ValueError, match="slot_mapping must be"):
        dispatch.write_kv(pool, k, k, torch.zeros(3, 1, dtype=torch.int64))
    with pytest.raises(ValueError, match="dtype"):
        dispatch.write_kv(pool, k.half(), k.half(), torch.zeros(3, 2, dtype=torch.int64))
