"""Head plans of the six policies on Llama-3.1-8B: head counts, sources, intervals."""
import numpy as np

from tessera.kvcache import HeadMode, make_policy
from tessera.kvcache.head_lists import duo_gate_values
from tessera.models import model

LLAMA = model("Llama-3.1-8B")


def test_flexicache_uses_the_papers_64_unstable_heads():
    plan = make_policy("flexicache", LLAMA).plan
    assert plan.count(HeadMode.RESIDENT_TOPK) == 64 and plan.count(HeadMode.OFFLOAD) == 192
    assert plan.mode[1, 0] == HeadMode.RESIDENT_TOPK and plan.mode[0, 0] == HeadMode.OFFLOAD
    assert set(np.unique(plan.rerank_interval[plan.mode == HeadMode.OFFLOAD])) == {16}
    assert plan.geometry.page_bytes == 8192 and plan.geometry.minmax_bytes_per_page == 512


def test_head_split_keeps_the_top_half_of_duoattention_gates_full():
    plan = make_policy("head_split", LLAMA).plan
    gates = duo_gate_values(LLAMA.name)
    full = plan.mode == HeadMode.FULL
    assert full.sum() == 128 and gates[full].min() >= gates[~full].max()
    assert plan.sink_pages == 8 and plan.window_pages == 16


def test_adaptive_spreads_intervals_and_keeps_the_least_stable_resident():
    plan = make_policy("flexicache_adaptive", LLAMA).plan
    intervals = plan.rerank_interval[plan.mode == HeadMode.OFFLOAD]
    assert len(np.unique(intervals)) >= 2
    resident = plan.mode == HeadMode.RESIDENT_TOPK
    paper_unstable = make_policy("flexicache", LLAMA).plan.mode == HeadMode.RESIDENT_TOPK
    assert resident.sum() >= 0.8 * paper_unstable.sum()
    assert (resident & paper_unstable).sum() >= 0.9 * paper_unstable.sum()


def test_adaptive_with_a_given_profile():
    ts = np.full((32, 8), 0.95)
    ts[0, 0] = 0.05
    plan = make_policy("flexicache_adaptive", LLAMA).__class__(LLAMA, head_stability=ts).plan
    assert plan.mode[0, 0] == HeadMode.RESIDENT_TOPK and plan.count(HeadMode.OFFLOAD) == 255
