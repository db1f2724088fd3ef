"""update_minmax: per-page min/max of keys, Triton (interpreter) against the reference."""
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tessera.kernels import dispatch
from tessera.kernels.layout import newly_full_blocks
from tessera.kernels.update_minmax import update_minmax, update_minmax_ref
from tests.kernels.pools import guarded, guards_intact

DTYPES = [torch.float32, torch.float16, torch.bfloat16]


@settings(max_examples=16, deadline=None, derandomize=True)
@given(dtype=st.sampled_from(DTYPES), head_dim=st.sampled_from([64, 128]), num_ids=st.integers(0, 11),
       seed=st.integers(0, 1000))
def test_triton_matches_ref(dtype, head_dim, num_ids, seed):
    gen = torch.Generator().manual_seed(seed)
    num_blocks = 12
    kv_pool = torch.randn(2, num_blocks, 16, head_dim, generator=gen).to(dtype)
    ids = torch.randperm(num_blocks, generator=gen)[:num_ids]
    ids[torch.rand(num_ids, generator=gen) < 0.2] = -1
    ids[torch.rand(num_ids, generator=gen) < 0.1] = num_blocks  # out of the pool: skipped
    results = []
    for fn in (update_minmax, update_minmax_ref):
        mm, buf = guarded((num_blocks, 2, head_dim), dtype)
        fn(kv_pool, mm, ids.to(torch.int32))
        assert guards_intact(buf)
        results.append(mm)
    assert torch.equal(results[0].nan_to_num(99), results[1].nan_to_num(99))
    done = ids[(ids >= 0) & (ids < num_blocks)]
    assert torch.equal(results[0][done, 0], kv_pool[0, done].amin(1))
    assert torch.equal(results[0][done, 1], kv_pool[0, done].amax(1))
    untouched = torch.ones(num_blocks, dtype=torch.bool)
    untouched[done] = False
    assert results[0][untouched].isnan().all()


def test_prefill_then_decode_pages():
    # seq 0 grows 10 -> 40 tokens (page 0 and 1 become full), seq 1 grows 31 -> 32 (page 1).
    tables = torch.tensor([[[5, 6, 7]], [[1, 2, 3]]], dtype=torch.int32)
    ids = newly_full_blocks(tables, torch.tensor([10, 31]), torch.tensor([40, 32]))
    assert sorted(ids.tolist()) == [2, 5, 6]
    kv_pool = torch.randn(2, 8, 16, 64)
    for impl in ("triton", "ref"):
        mm = torch.zeros(8, 2, 64)
        dispatch.update_minmax(kv_pool, mm, ids, impl=impl)
        assert torch.equal(mm[6, 0], kv_pool[0, 6].amin(0)) and (mm[7] == 0).all()
