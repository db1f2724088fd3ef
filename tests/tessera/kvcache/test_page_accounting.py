"""Page accounting of RequestKV under random head plans, checked against an independent ledger (hypothesis).

The ledger replays the PageMoves the backend would execute; the state's own views must agree with it.
"""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tessera.kvcache import HeadMode, HeadPlan, RequestKV
from tessera.kvcache.geometry import PageGeometry
from tessera.kvcache.head_model import HeadModel, HeadModelParams

from .helpers import TINY, RandomTopK

SHAPE = (TINY.num_layers, TINY.num_kv_heads)


@st.composite
def scenarios(draw):
    heads = SHAPE[0] * SHAPE[1]
    modes = np.array(draw(st.lists(st.sampled_from(list(HeadMode)), min_size=heads, max_size=heads)), dtype=np.int8)
    intervals = np.array(draw(st.lists(st.sampled_from([1, 2, 3, 4, 8, 16]), min_size=heads, max_size=heads)))
    page_tokens = draw(st.sampled_from([1, 2, 4, 16]))
    plan = HeadPlan(policy="random", geometry=PageGeometry.of(TINY, page_tokens), mode=modes.reshape(SHAPE),
                    rerank_interval=np.where(modes == HeadMode.OFFLOAD, intervals, 0).astype(np.int32).reshape(SHAPE),
                    topk_pages=draw(st.integers(2, 8)), sink_pages=draw(st.integers(0, 2)),
                    window_pages=draw(st.integers(1, 4)), keeps_minmax=draw(st.booleans()))
    steps = draw(st.integers(0, 64))
    return dict(plan=plan, prompt=draw(st.integers(1, 80)), steps=steps,
                preempt_at=draw(st.one_of(st.none(), st.integers(1, max(1, steps)))),
                source=draw(st.sampled_from(["random", "head_model"])), seed=draw(st.integers(0, 2**16)))


class Ledger:
    """What a backend holds if it executes every PageMoves it is given."""

    def __init__(self, rk: RequestKV) -> None:
        self.rk = rk
        self.device: set = set()
        self.host: set = set()
        self.written: set = set()
        self.pending_free: set = set()

    def reset(self) -> None:
        self.device.clear(), self.host.clear(), self.written.clear(), self.pending_free.clear()

    def all_pages(self, pages) -> set:
        return {(l, h, p) for l in range(SHAPE[0]) for h in range(SHAPE[1]) for p in pages}

    def apply(self, moves, topk_after: dict) -> None:
        rk, mode = self.rk, self.rk.plan.mode
        for l, h, p in map(tuple, moves.drop):
            assert mode[l, h] == HeadMode.WINDOW and (l, h, p) in self.device
            self.device.discard((l, h, p))
        for l, h, p in map(tuple, moves.d2h):
            assert mode[l, h] == HeadMode.OFFLOAD, "only OFFLOAD (stable) heads go to host"
            assert (l, h, p) not in self.written, "a page is written to host exactly once"
            assert p < rk.num_tokens // rk.plan.geometry.page_tokens, "only full pages are written"
            assert (l, h, p) in self.device
            self.written.add((l, h, p))
            self.host.add((l, h, p))
        for l, h, p in map(tuple, moves.h2d):
            assert mode[l, h] == HeadMode.OFFLOAD
            assert (l, h, p) in self.host and (l, h, p) not in self.device, "copy only pages not on device"
            assert p in topk_after[(l, h)], "copy only pages promoted into the top-K"
            self.device.add((l, h, p))
        for l, h, p in map(tuple, moves.free):
            assert mode[l, h] == HeadMode.OFFLOAD and (l, h, p) in self.host, "a freed page is safe on host"
            assert (l, h, p) in self.device
            if rk.is_reloading:
                self.pending_free.add((l, h, p))
            else:
                self.device.discard((l, h, p))

    def land(self) -> None:
        self.device -= self.pending_free
        self.pending_free.clear()

    def check(self) -> None:
        rk = self.rk
        device, host = rk.residency()
        state_device = set(map(tuple, np.argwhere(device)))
        if rk.is_reloading:  # blocks reused by incoming pages are counted once, in the state
            assert state_device <= self.device
        else:
            assert state_device == self.device
        assert set(map(tuple, np.argwhere(host))) == self.host
        assert rk.device_pages == len(state_device) and rk.host_pages == len(self.host)
        n = rk.num_pages
        mode = rk.plan.mode
        for l in range(SHAPE[0]):
            for h in range(SHAPE[1]):
                on_device = {p for (a, b, p) in state_device if (a, b) == (l, h)}
                if mode[l, h] == HeadMode.OFFLOAD:
                    on_host = {p for (a, b, p) in self.host if (a, b) == (l, h)}
                    assert on_device | on_host == set(range(n)), "no page of a stable head is lost"
                else:
                    assert not any((a, b) == (l, h) for (a, b, _) in self.host), "only stable heads offload"
                if mode[l, h] in (HeadMode.FULL, HeadMode.RESIDENT_TOPK):
                    assert on_device == set(range(n)), "full and unstable heads keep every page"
                attended = rk.attended_pages(l, h)
                if attended is not None and n:
                    assert n - 1 in attended and set(attended) <= on_device, "current page always attended"


def topk_sets(rk: RequestKV) -> dict:
    off = rk.plan.mode == HeadMode.OFFLOAD
    return {(l, h): set(rk.topk_pages(l, h)) for l, h in zip(*np.nonzero(off))}


@settings(max_examples=40, deadline=None)
@given(scenarios())
def test_page_accounting(sc):
    plan = sc["plan"]
    if sc["source"] == "random":
        source = RandomTopK(sc["seed"])
    else:
        source = HeadModel(HeadModelParams(), *SHAPE, seed=sc["seed"]).behaviour(0)
    rk = RequestKV(plan, 0, sc["prompt"], source)
    ledger = Ledger(rk)
    summary = rk.on_prefill_done()
    ledger.device = ledger.all_pages(range(rk.num_pages))
    ledger.apply(summary.moves, topk_sets(rk))
    ledger.check()
    k, page = plan.topk_pages, plan.geometry.page_tokens
    for step in range(1, sc["steps"] + 1):
        if step == sc["preempt_at"]:
            rk.on_preempt()
            ledger.reset()
            summary = rk.on_prefill_done(num_tokens=sc["prompt"] + rk.decode_step)
            ledger.device = ledger.all_pages(range(rk.num_pages))
            ledger.apply(summary.moves, topk_sets(rk))
            ledger.check()
        due_layers, due_heads = rk.due_heads()
        pages_before = rk.num_pages
        summary = rk.on_decode_step()
        if rk.num_pages > pages_before:
            ledger.device |= ledger.all_pages([rk.num_pages - 1])
        ledger.apply(summary.moves, topk_sets(rk))
        assert summary.h2d_bytes == len(summary.moves.h2d) * plan.geometry.page_bytes
        assert summary.d2h_bytes == len(summary.moves.d2h) * plan.geometry.page_bytes
        if rk.is_reloading:
            ledger.check()
            rk.on_reload_done()
            ledger.land()
        ledger.check()
        device, _ = rk.residency()
        for l, h in zip(due_layers, due_heads):  # just reranked: exactly K pages (tail empty)
            assert device[l, h].sum() == min(k, rk.num_pages)
        assert summary.attended_tokens_per_head <= rk.num_tokens
    rk.on_finish()
    assert rk.device_pages == 0 and rk.host_pages == 0 and rk.minmax_bytes == 0
