"""Reranks drawn ahead for many requests at once (rerank_batch.draw_ranks): the same draws as the per-request
fixed-interval path on the same random stream, the same distribution when requests share a draw, and RequestKV
using a drawn rank at its step (and dropping it on preemption)."""
import copy

import numpy as np
import pytest

from tessera.kvcache.policies import make_policy
from tessera.kvcache.rerank_batch import draw_ranks
from tessera.models import model
from tessera.sim.kv_setup import truth_head_model
from tests.tessera.kvcache.helpers import decode_totals

LLAMA = model("Llama-3.1-8B")
HEADS = truth_head_model(LLAMA)
POLICY = make_policy("flexicache", LLAMA)


def ranked_request(request_id: int, prompt: int, steps: int = 40):
    """A sampled-mode request past a few reranks (reloads landed), ready to draw its next rank ahead."""
    rk = POLICY.new_request(request_id, prompt, HEADS.behaviour(request_id), track_pages=False)
    rk.use_sampled_reranks()
    rk.on_prefill_done()
    for _ in range(steps):
        if rk.on_decode_step().is_reloading:
            rk.on_reload_done()
    return rk


def test_one_job_is_the_per_request_draw_on_the_same_stream():
    rk = ranked_request(5, 20000)
    job = rk.next_rank_job()
    assert job is not None and job.step == rk.next_rank_step > rk.decode_step
    reference = copy.deepcopy(rk._sampler)
    reference.rng = np.random.default_rng(11)
    c = reference._rank_uniform(job.rows, job.a + job.shift, job.a, job.old_size, job.steps_since)
    (totals,) = draw_ranks(np.random.default_rng(11), [job])
    assert (totals.promoted, totals.fetched, totals.freed) == (c.promoted.sum(), c.fetched.sum(), c.freed.sum())
    assert (rk._sampler.far == reference.far).all() and (rk._sampler.near == reference.near).all()


def test_shared_draws_agree_in_distribution_with_per_request_draws():
    # requests at other prompt lengths (other a, other far counts) and rank phases share one draw
    base = [ranked_request(i, p, s) for i, (p, s) in enumerate([(12000, 40), (20000, 47), (30500, 33), (9000, 60)])]
    shared, alone = [], []
    for seed in range(80):
        rks = copy.deepcopy(base)
        jobs = [rk.next_rank_job() for rk in rks]
        shared.append([[t.promoted, t.fetched, t.freed] for t in draw_ranks(np.random.default_rng(seed), jobs)]
                      + [[rk._sampler.far.sum(), rk._sampler.near.sum(), 0] for rk in rks])
        rks = copy.deepcopy(base)
        row = []
        for j, rk in enumerate(rks):
            rk._sampler.rng = np.random.default_rng([seed, j])
            job = rk.next_rank_job()
            c = rk._sampler._rank_uniform(job.rows, job.a + job.shift, job.a, job.old_size, job.steps_since)
            row.append([c.promoted.sum(), c.fetched.sum(), c.freed.sum()])
        alone.append(row + [[rk._sampler.far.sum(), rk._sampler.near.sum(), 0] for rk in rks])
    shared, alone = np.array(shared, dtype=float), np.array(alone, dtype=float)
    assert shared.mean(0) == pytest.approx(alone.mean(0), rel=0.02, abs=0.5)
    assert shared[:, :4].std(0) == pytest.approx(alone[:, :4].std(0), rel=0.35, abs=1.0)


def decode(request_id: int, prompt: int, steps: int, ahead: bool) -> tuple[int, int, int, float]:
    """(H2D pages, promoted pages, reloads, mean device pages), ranks drawn ahead (one request's own draw) or not."""
    rk = POLICY.new_request(request_id, prompt, HEADS.behaviour(request_id), track_pages=False)
    rk.use_sampled_reranks()
    rk.on_prefill_done()
    rng = np.random.default_rng([request_id, 99])

    def draw_ahead(rk):
        if (job := rk.next_rank_job()) is not None:
            rk.set_pending_rank(draw_ranks(rng, [job])[0])

    return decode_totals(rk, steps, before_step=draw_ahead if ahead else None)


def test_ranks_drawn_ahead_agree_with_ranks_drawn_at_their_step():
    ahead = np.array([decode(i, 3000 + 37 * i, 200, True) for i in range(40)], dtype=float)
    inline = np.array([decode(i, 3000 + 37 * i, 200, False) for i in range(40)], dtype=float)
    assert ahead[:, 2].tolist() == inline[:, 2].tolist()  # every rerank of a long request fetches
    for col in (0, 1, 3):
        assert ahead[:, col].mean() == pytest.approx(inline[:, col].mean(), rel=0.015)


def test_preemption_drops_a_rank_drawn_ahead():
    rk = ranked_request(3, 2000)
    rk.set_pending_rank(draw_ranks(np.random.default_rng(0), [rk.next_rank_job()])[0])
    assert rk.has_pending_rank
    rk.on_preempt()
    assert not rk.has_pending_rank and rk.next_rank_job() is None
    rk.on_prefill_done(2040)
    s = rk.on_decode_step()  # the first rank after the preemption is drawn at its step, nothing fetched
    assert s.h2d_bytes == 0 and not s.is_reloading
    for _ in range(16):  # past the next rank (drawn at its step: no page created since the first)
        if rk.on_decode_step().is_reloading:
            rk.on_reload_done()
    assert rk.next_rank_job() is not None


def test_a_rank_for_another_step_is_refused():
    rk = ranked_request(4, 5000)
    totals = draw_ranks(np.random.default_rng(0), [rk.next_rank_job()])[0]
    while rk.decode_step < totals.step:  # the rank happens at its step, drawn there
        if rk.on_decode_step().is_reloading:
            rk.on_reload_done()
    with pytest.raises(ValueError, match="drawn for step"):
        rk.set_pending_rank(totals)
