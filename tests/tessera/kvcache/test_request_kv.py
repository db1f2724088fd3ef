"""RequestKV on real shapes: FlexiCache's lifecycle on Llama-3.1-8B, summaries, stalls, explicit top-K."""
import numpy as np
import pytest

from tessera.kvcache import make_policy
from tessera.kvcache.head_model import HeadModel, default_params
from tessera.kvcache.head_lists import shipped_unstable_heads
from tessera.kvcache.memory_model import device_pages
from tessera.models import model

LLAMA = model("Llama-3.1-8B")


def behaviour(request_id=0):
    return HeadModel(default_params(), 32, 8, shipped_unstable_heads(LLAMA.name), seed=3).behaviour(request_id)


def run(policy, prompt, steps, request_id=0, **params):
    rk = make_policy(policy, LLAMA, **params).new_request(request_id, prompt, behaviour(request_id))
    out = [rk.on_prefill_done()]
    for _ in range(steps):
        out.append(rk.on_decode_step())
        if rk.is_reloading:
            rk.on_reload_done()
    return rk, out


def test_flexicache_lifecycle_on_a_20k_prompt():
    rk, out = run("flexicache", 20_000, 16)
    prefill, first, reload = out[0], out[1], out[16]
    assert prefill.device_pages == 256 * 1250 and prefill.d2h_bytes == 192 * 1250 * 8192  # big offload
    assert first.device_pages == 64 * 1251 + 192 * 64 and first.h2d_bytes == 0  # top-K kept, rest freed
    assert reload.is_reloading and 0 < reload.h2d_bytes <= 192 * 64 * 8192
    assert reload.num_promoted_pages * 8192 >= reload.h2d_bytes
    assert rk.device_pages == 64 * 1251 + 192 * 64  # after the reload landed: K per stable head
    assert rk.device_pages == device_pages(rk.plan, rk.num_tokens)
    assert out[2].attended_tokens_per_head == pytest.approx((63 * 16 + 2 + 16 * 0) * 1.0 + 0.0, abs=16)


def test_a_reloading_request_cannot_decode():
    rk = make_policy("flexicache", LLAMA).new_request(0, 20_000, behaviour())
    rk.on_prefill_done()
    for _ in range(16):
        s = rk.on_decode_step()
    assert s.is_reloading
    with pytest.raises(RuntimeError, match="on_reload_done"):
        rk.on_decode_step()


def test_stable_page_fill_is_copied_to_host_once():
    rk, out = run("flexicache", 20_000, 40)
    d2h_steps = [s.decode_step for s in out[1:] if s.d2h_bytes]
    assert d2h_steps == [16, 32]  # 20,000 tokens = 1,250 full pages; a page fills every 16 tokens
    assert all(s.d2h_bytes == 192 * 8192 for s in out[1:] if s.d2h_bytes)


@pytest.mark.parametrize("policy", ["full", "quest", "streaming", "head_split", "flexicache_adaptive"])
def test_steady_state_matches_the_analytic_memory_model(policy):
    rk, _ = run(policy, 9_000, 64)
    assert rk.device_pages == device_pages(rk.plan, rk.num_tokens)


def test_quest_reads_k_pages_and_scans_minmax_every_step():
    rk, out = run("quest", 20_000, 3)
    s = out[-1]
    assert s.attended_tokens_per_head == 63 * 16 + 3  # K - 1 full pages + the current page's 3 tokens
    assert s.minmax_bytes_scanned == 256 * 1250 * 512 and s.device_pages == 256 * 1251


@pytest.mark.parametrize("policy", ["full", "quest", "streaming", "head_split", "flexicache"])
def test_sparse_tokens_are_the_page_list_reads(policy):
    """Only top-K heads beyond K pages read through page lists; full and window heads never do."""
    _, short = run(policy, 500, 2)  # 32 pages <= K = 64: every head reads densely
    assert all(s.sparse_tokens_per_head == 0 for s in short[1:])
    _, out = run(policy, 20_000, 20)
    for s in out[1:]:
        assert 0 <= s.sparse_tokens_per_head <= s.attended_tokens_per_head
    last = out[-1]
    if policy in ("full", "streaming", "head_split"):
        assert last.sparse_tokens_per_head == 0
    elif policy == "quest":
        assert last.sparse_tokens_per_head == last.attended_tokens_per_head
    else:  # every head of flexicache is a top-K head (unstable: resident, stable: offloaded)
        assert last.sparse_tokens_per_head == pytest.approx(last.attended_tokens_per_head)


def test_explicit_topk_rows_follow_due_heads():
    rk = make_policy("flexicache", LLAMA).new_request(0, 20_000)
    rk.on_prefill_done()
    layers, heads = rk.due_heads()
    assert len(layers) == 192
    topk = np.tile(np.arange(63, -1, -1, dtype=np.int32), (192, 1))  # pages 0..63: current page missing
    rk.on_decode_step(topk=topk)
    kept = rk.topk_pages(int(layers[0]), int(heads[0]))
    assert 1250 in kept and len(kept) == 64 and 0 not in kept  # the worst (last) entry gave way
    with pytest.raises(ValueError, match="topk_source"):
        for _ in range(15):
            rk.on_decode_step()


def test_same_seed_same_summaries():
    a = [(s.device_pages, s.h2d_bytes, s.num_promoted_pages) for s in run("flexicache", 12_000, 48, 5)[1]]
    b = [(s.device_pages, s.h2d_bytes, s.num_promoted_pages) for s in run("flexicache", 12_000, 48, 5)[1]]
    assert a == b
