"""Scheduler families: each is tested for the behaviour that defines it, on hand-made queues and whole simulations.

vLLM v0 never mixes prefills and decodes and runs prefills first; Sarathi never lets a decode wait behind a
prefill; Orca reserves each request's whole KV at admission and never preempts; all finish every request.
"""
from collections import deque

import numpy as np
import pytest

from tessera.memory import MemoryConfig
from tessera.scheduling import FAMILIES, SchedulerConfig, make_scheduler
from tessera.scheduling.common import is_decode
from tessera.sim import Cluster, make_router
from tessera.sim.block_pool import BlockPool
from tessera.sim.sequence import SeqState
from tessera.types import Request
from tests.sim.fakes import LinearCost, worker_specs


def seq(i, prompt, output=10):
    return SeqState(Request(i, 0.0, prompt, output))


def decoding(i, prompt=32, output=10):
    """A request whose prefill finished and that sampled its first token."""
    s = seq(i, prompt, output)
    s.num_computed_tokens, s.num_generated, s.num_tokens = prompt, 1, prompt + 1
    return s


class Recording:
    """Wraps a family's scheduler and records, per step, what was running before and what was scheduled."""

    def __init__(self, inner):
        self.inner, self.config, self.steps = inner, inner.config, []

    def schedule(self, waiting, running, pool):
        ready = [s for s in running if is_decode(s)]
        batch = self.inner.schedule(waiting, running, pool)
        kinds = [("decode" if is_decode(s) and n == 1 else "prefill", s, n)
                 for s, n in zip(batch.seqs, batch.num_scheduled_tokens)]
        self.steps.append((ready, kinds, list(batch.preempted)))
        return batch


def simulate(family, *, n=60, budget=256, max_seqs=8, seed=0):
    rng = np.random.default_rng(seed)
    reqs = [Request(i, float(t), int(p), int(o)) for i, (t, p, o) in enumerate(zip(
        np.sort(rng.uniform(0, 0.3, n)), rng.integers(8, 600, n), rng.integers(1, 60, n)))]
    config = SchedulerConfig(max_num_seqs=max_seqs, max_num_batched_tokens=budget if family in ("vllm_v1", "sarathi") else 1024,
                             family=family)
    cluster = Cluster(worker_specs(1), lambda s: LinearCost(), config, MemoryConfig(0.5, 0.0),
                      make_router("round_robin"), fast_forward=False)
    recorder = Recording(cluster.workers[0].scheduler)
    cluster.workers[0].scheduler = recorder
    return cluster.run(reqs), recorder


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_finishes_every_request_deterministically(family):
    run, _ = simulate(family)
    assert all(s.status == "finished" and s.num_generated == s.max_output_tokens for s in run.seqs)
    again, _ = simulate(family)
    assert [s.finish_s for s in run.seqs] == [s.finish_s for s in again.seqs]


def test_vllm_v0_never_mixes_prefills_and_decodes():
    _, rec = simulate("vllm_v0")
    kinds = [{k for k, _, _ in batch} for _, batch, _ in rec.steps if batch]
    assert all(len(k) == 1 for k in kinds)
    assert {"decode"} in kinds and {"prefill"} in kinds


def test_vllm_v0_runs_an_admissible_prefill_before_any_decode_and_never_chunks():
    sched = make_scheduler(SchedulerConfig(family="vllm_v0", watermark=0.0, max_num_seqs=64,
                                           max_num_batched_tokens=100))
    running, waiting = [decoding(0), decoding(1)], deque([seq(2, 60), seq(3, 60)])
    pool = BlockPool(100, 16)
    for s in running:
        pool.allocate(s, 0)
    batch = sched.schedule(waiting, running, pool)
    assert [(s.request_id, n) for s, n in zip(batch.seqs, batch.num_scheduled_tokens)] == [(2, 60)]
    assert [s.request_id for s in waiting] == [3]  # 60 + 60 tokens exceed the budget of 100: no chunk of 3
    assert sched.config.chunked_prefill is False


def test_sarathi_decodes_never_wait_behind_a_prefill_where_vllm_v1_stalls_them():
    def scenario(family):
        long, short = seq(0, 2000), seq(1, 32)
        long.num_computed_tokens = 512  # a long prompt half-way through chunked prefill, admitted first
        short.num_computed_tokens, short.num_generated, short.num_tokens = 32, 1, 33
        sched = make_scheduler(SchedulerConfig(family=family, max_num_batched_tokens=512, watermark=0.0))
        pool = BlockPool(1000, 16)
        return sched.schedule(deque(), [long, short], pool)
    v1, sarathi = scenario("vllm_v1"), scenario("sarathi")
    assert [s.request_id for s in v1.seqs] == [0]  # the chunk takes the whole budget: the decode waits
    assert [(s.request_id, n) for s, n in zip(sarathi.seqs, sarathi.num_scheduled_tokens)] == [(1, 1), (0, 511)]


def test_sarathi_takes_a_prompts_last_token_as_a_prefill_not_a_decode():
    """The decode pass is for sequences that sampled a token; a prompt with one token left waits for the prefill
    pass (it was taken as a decode and scheduled ahead of the real ones)."""
    last, ready = seq(0, 33), decoding(1)
    last.num_computed_tokens = 32
    assert not is_decode(last) and is_decode(ready)
    sched = make_scheduler(SchedulerConfig(family="sarathi", max_num_batched_tokens=512, watermark=0.0))
    batch = sched.schedule(deque(), [last, ready], BlockPool(1000, 16))
    assert [(s.request_id, n) for s, n in zip(batch.seqs, batch.num_scheduled_tokens)] == [(1, 1), (0, 1)]


def test_sarathi_schedules_every_ready_decode_in_every_step():
    _, rec = simulate("sarathi", budget=64)
    for ready, batch, preempted in rec.steps:
        scheduled = {id(s) for _, s, _ in batch}
        assert all(id(s) in scheduled for s in ready if s not in preempted)
    assert any(len({k for k, _, _ in batch}) == 2 for _, batch, _ in rec.steps)  # mixed batches do occur


def test_orca_reserves_the_whole_request_and_never_preempts_or_chunks():
    run, rec = simulate("orca", max_seqs=16)
    assert not any(preempted for _, _, preempted in rec.steps)
    for _, batch, _ in rec.steps:
        for kind, s, n in batch:
            if kind == "prefill":
                assert n == s.num_prompt_tokens  # whole prompt in one iteration
    sched = make_scheduler(SchedulerConfig(family="orca", watermark=0.0))
    pool, s = BlockPool(100, 16), seq(0, 40, output=100)
    sched.schedule(deque([s]), [], pool)
    assert s.num_blocks == pool.blocks_for_tokens(40 + 100 - 1)  # not paged: the maximum, up front
    assert sum(w.num_preemptions for w in run.workers) == 0


def test_unknown_family_names_the_field():
    with pytest.raises(ValueError, match="scheduler.family='v2'.*vllm_v1, vllm_v0, sarathi, orca"):
        SchedulerConfig(family="v2")
