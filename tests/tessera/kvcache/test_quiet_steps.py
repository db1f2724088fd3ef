"""RequestKV.quiet_stretch: the steps it calls quiet are exactly the decode steps that move nothing (but a page
start's new pages), with the affine attended / sparse counts it states; the step after the stretch is not quiet;
skip_quiet takes them at once."""
import dataclasses

import numpy as np
import pytest

from tessera.kvcache.head_plan import HeadMode
from tessera.kvcache.policies import make_policy
from tessera.kvcache.policies.base import PlannedPolicy
from tessera.models import model
from tessera.sim.kv_setup import truth_head_model

LLAMA = model("Llama-3.1-8B")
HEADS = truth_head_model(LLAMA)


def mixed_policy() -> PlannedPolicy:
    """FlexiCache's plan with its resident top-K heads split into FULL, WINDOW and RESIDENT_TOPK thirds."""
    plan = make_policy("flexicache", LLAMA).plan
    mode = plan.mode.copy()
    resident = np.flatnonzero(mode.ravel() == HeadMode.RESIDENT_TOPK)
    mode.ravel()[resident[0::3]] = HeadMode.FULL
    mode.ravel()[resident[1::3]] = HeadMode.WINDOW
    return PlannedPolicy(dataclasses.replace(plan, policy="mixed", mode=mode, sink_pages=1, window_pages=8))


def new_request(policy: str | PlannedPolicy, request_id: int, prompt: int, mode: str):
    planned = policy if isinstance(policy, PlannedPolicy) else (
        mixed_policy() if policy == "mixed" else make_policy(policy, LLAMA))
    rk = planned.new_request(request_id, prompt, HEADS.behaviour(request_id), track_pages=False)
    if mode == "sampled":
        rk.use_sampled_reranks()
    elif mode == "moments":
        rk.use_moment_reranks(8192, HEADS.seed)
    rk.quiet_fast_path = False  # every step through on_decode_step's full arithmetic
    rk.on_prefill_done()
    return rk


def stretch_of(rk):
    """quiet_stretch of a request whose steps take the full path (it answers None for such a request otherwise)."""
    rk.quiet_fast_path = True
    try:
        return rk.quiet_stretch()
    finally:
        rk.quiet_fast_path = False


def is_quiet(before, s, grown: int) -> bool:
    """Nothing moved but `grown` device pages (a page start: one per head)."""
    return (not s.d2h_bytes and not s.h2d_bytes and not s.num_promoted_pages and not s.is_reloading
            and s.device_pages == before.device_pages + grown and s.host_pages == before.host_pages
            and s.minmax_bytes == before.minmax_bytes)


@pytest.mark.parametrize("policy", ["flexicache", "flexicache_adaptive", "mixed"])
@pytest.mark.parametrize("mode", ["pages", "sampled", "moments"])
@pytest.mark.parametrize("prompt", [700, 3000, 17_000])
def test_quiet_stretches_match_the_full_step(policy, mode, prompt):
    rk = new_request(policy, 11, prompt, mode)
    stretches = starts = 0
    for _ in range(400):
        if rk.is_reloading:
            rk.on_reload_done()
        stretch = stretch_of(rk)
        if stretch is None:
            rk.on_decode_step()
            continue
        stretches += 1
        assert stretch.steps >= 1
        before = rk.summary()
        # a page start opens the stretch only where no WINDOW head drops a page then
        assert stretch.starts_page == (rk.num_tokens % 16 == 0) and not (stretch.starts_page and rk._n_win)
        starts += stretch.starts_page
        grown = LLAMA.num_layers * LLAMA.num_kv_heads if stretch.starts_page else 0
        for j in range(stretch.steps):
            s = rk.on_decode_step()
            assert is_quiet(before, s, grown)
            assert s.attended_tokens == stretch.attended + j * stretch.attended_slope
            assert s.sparse_tokens == stretch.sparse + j * stretch.sparse_slope
            assert s.minmax_bytes_scanned == stretch.scanned
        assert stretch_of(rk) is None  # a rank is due, or the next token fills a page (or starts one: WINDOW)
    assert stretches > 20
    assert (starts > 5) == (policy != "mixed")


def test_skip_quiet_equals_stepping():
    stepped, skipped = new_request("flexicache", 5, 5000, "moments"), new_request("flexicache", 5, 5000, "moments")
    for rk in (stepped, skipped):
        while stretch_of(rk) is None:
            rk.on_decode_step()
            if rk.is_reloading:
                rk.on_reload_done()
    steps = stretch_of(stepped).steps
    for _ in range(steps):
        stepped.on_decode_step()
    skipped.skip_quiet(steps)
    assert skipped.summary() == stepped.summary()
    assert (skipped.num_tokens, skipped.decode_step) == (stepped.num_tokens, stepped.decode_step)
    assert skipped.on_decode_step() == stepped.on_decode_step()


@pytest.mark.parametrize("mode", ["pages", "sampled", "moments"])
@pytest.mark.parametrize("prompt", [3000, 17_000])
def test_a_stretch_through_pages_matches_the_full_steps(mode, prompt):
    # FlexiCache with a rank every 64 steps: stretches span pages. Each step's counts follow the first line up to
    # fill_at, then page_line's from each page start; each fill step copies what fill_page says; nothing else moves
    policy = make_policy("flexicache", LLAMA, rerank_interval=64)
    rk, lazy = (new_request(policy, 11, prompt, mode) for _ in range(2))  # lazy: a twin for fill_page
    fills = stretches = 0
    for _ in range(300):
        for r in (rk, lazy):
            if r.is_reloading:
                r.on_reload_done()
        rk.quiet_fast_path = True
        stretch = rk.quiet_stretch(through_pages=True)
        rk.quiet_fast_path = False
        if stretch is None or not stretch.fill_at:
            assert rk.on_decode_step() == lazy.on_decode_step()
            continue
        stretches += 1
        line = (stretch.attended, stretch.sparse, stretch.sparse_slope, stretch.scanned)
        start, tokens0 = 1, rk.num_tokens
        for j in range(1, stretch.steps + 1):
            s = rk.on_decode_step()
            attended, sparse, slope, scanned = line
            assert s.attended_tokens == attended + (j - start) * stretch.attended_slope
            assert s.sparse_tokens == sparse + (j - start) * slope and s.minmax_bytes_scanned == scanned
            assert not s.h2d_bytes and not s.num_promoted_pages and not s.is_reloading
            if (j - stretch.fill_at) % 16 == 0 and j >= stretch.fill_at:
                fills += 1
                d2h, host, minmax = lazy.fill_page(tokens0 + j)
                assert (s.d2h_bytes, s.host_kv_bytes, s.minmax_bytes) == (d2h, host, minmax) and d2h > 0
                line, start = lazy.page_line(tokens0 + j + 1), j + 1
            else:
                assert not s.d2h_bytes
        lazy.skip_quiet(stretch.steps)
        assert lazy.summary() == rk.summary()
    assert stretches > 3 and fills > 2 * stretches
