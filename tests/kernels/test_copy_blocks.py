"""copy_blocks: block pairs between two pools and inside one, Triton (interpreter) against the reference."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tessera.kernels import dispatch
from tessera.kernels.copy_blocks import copy_blocks, copy_blocks_ref
from tests.kernels.pools import guarded, guards_intact

DTYPES = [torch.float32, torch.float16, torch.bfloat16]


@settings(max_examples=16, deadline=None, derandomize=True)
@given(dtype=st.sampled_from(DTYPES), head_dim=st.sampled_from([64, 128]), num_pairs=st.integers(0, 5),
       same_pool=st.booleans(), seed=st.integers(0, 1000))
def test_triton_matches_ref(dtype, head_dim, num_pairs, same_pool, seed):
    gen = torch.Generator().manual_seed(seed)
    num_src = 10
    num_dst = num_src if same_pool else 14
    src, _ = guarded((2, num_src, 16, head_dim), dtype, fill=5.0)
    src.copy_(torch.randn(src.shape, generator=gen))
    order = torch.randperm(num_src, generator=gen)
    src_ids = order[:num_pairs]
    # Inside one pool the destinations must not be sources of the same batch.
    dst_ids = order[num_pairs:2 * num_pairs] if same_pool else torch.randperm(num_dst, generator=gen)[:num_pairs]
    # Skipped pairs: an id of -1, or just past the end of a pool (into its guard).
    for i, (ids, bad) in enumerate(((dst_ids, -1), (dst_ids, num_dst), (src_ids, num_src))):
        if i < num_pairs:
            ids[i] = bad
    results = []
    for fn in (copy_blocks, copy_blocks_ref):
        dst, buf = guarded((2, num_dst, 16, head_dim), dtype, fill=3.0)
        if same_pool:
            dst.copy_(src)
        fn(dst if same_pool else src, dst, src_ids, dst_ids.to(torch.int32))
        assert guards_intact(buf, fill=3.0)
        results.append(dst)
    assert torch.equal(results[0], results[1])
    ok = (dst_ids >= 0) & (dst_ids < num_dst) & (src_ids < num_src)
    assert torch.equal(results[0][:, dst_ids[ok]], src[:, src_ids[ok]])


def test_dispatch_on_cpu_uses_ref_and_checks_shapes():
    src, dst = torch.randn(2, 4, 16, 64), torch.zeros(2, 4, 16, 64)
    dispatch.copy_blocks(src, dst, torch.tensor([0, 3]), torch.tensor([2, 1]))
    assert torch.equal(dst[:, 2], src[:, 0]) and torch.equal(dst[:, 1], src[:, 3])
    with pytest.raises(ValueError, match="pools differ"):
        dispatch.copy_blocks(src, torch.zeros(2, 4, 16, 128), torch.tensor([0]), torch.tensor([0]))
    with pytest.raises(ValueError, match="differ"):
        dispatch.copy_blocks(src, dst, torch.tensor([0, 1]), torch.tensor([0]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_offload_and_reload_on_gpu():
    device_pool = torch.randn(2, 32, 16, 128, device="cuda", dtype=torch.bfloat16)
    host_pool = torch.zeros(2, 16, 16, 128, dtype=torch.bfloat16, pin_memory=True)
    stream = torch.cuda.Stream()
    ids = torch.tensor([3, 9, 27])
    dispatch.copy_blocks(device_pool, host_pool, ids, torch.tensor([0, 1, 2]), stream=stream)
    dispatch.copy_blocks(host_pool, device_pool, torch.tensor([0, 1, 2]), torch.tensor([4, 5, 6]), stream=stream)
    stream.synchronize()
    assert torch.equal(host_pool[:, :3], device_pool[:, ids].cpu())
    assert torch.equal(device_pool[:, 4:7], device_pool[:, ids])
