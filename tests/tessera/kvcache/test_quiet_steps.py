"""RequestKV.quiet_stretch: the steps it calls quiet are exactly the decode steps that move nothing, with the affine
attended / sparse counts it states; the step after the stretch is not quiet; skip_quiet takes them at once."""
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


def new_request(policy: str, request_id: int, prompt: int, mode: str):
    planned = mixed_policy() if policy == "mixed" else make_policy(policy, LLAMA)
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


def is_quiet(before, s, rk_tokens_before: int) -> bool:
    return (not s.d2h_bytes and not s.h2d_bytes and not s.num_promoted_pages and not s.is_reloading
            and s.device_pages == before.device_pages and s.host_pages == before.host_pages
            and s.minmax_bytes == before.minmax_bytes and rk_tokens_before % 16 != 0)


@pytest.mark.parametrize("policy", ["flexicache", "flexicache_adaptive", "mixed"])
@pytest.mark.parametrize("mode", ["pages", "sampled", "moments"])
@pytest.mark.parametrize("prompt", [700, 3000, 17_000])
def test_quiet_stretches_match_the_full_step(policy, mode, prompt):
    rk = new_request(policy, 11, prompt, mode)
    stretches = 0
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
        for j in range(stretch.steps):
            tokens = rk.num_tokens
            s = rk.on_decode_step()
            assert is_quiet(before, s, tokens)
            assert s.attended_tokens == stretch.attended + j * stretch.attended_slope
            assert s.sparse_tokens == stretch.sparse + j * stretch.sparse_slope
            assert s.minmax_bytes_scanned == stretch.scanned
        assert stretch_of(rk) is None  # a rank is due, or the next token fills or starts a page
    assert stretches > 20


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
