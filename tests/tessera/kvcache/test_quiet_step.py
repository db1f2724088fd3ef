"""RequestKV's quiet-step fast path (no rank due, no page filled, no page ids) hands back exactly the general
path's StepSummary, step for step, under every policy and both rerank modes."""
import pytest

from tessera.kvcache.policies import make_policy
from tessera.models import model
from tessera.sim.kv_setup import truth_head_model

LLAMA = model("Llama-3.1-8B")
HEADS = truth_head_model(LLAMA)


@pytest.mark.parametrize("name, sampled", [("flexicache", True), ("flexicache", False), ("flexicache_adaptive", True),
                                           ("quest", False), ("streaming", False), ("head_split", False)])
def test_quiet_steps_match_the_general_path(name, sampled):
    policy = make_policy(name, LLAMA)
    requests = []
    for fast in (True, False):
        rk = policy.new_request(9, 950, HEADS.behaviour(9), track_pages=False)  # 60 pages: crosses K = 64
        if sampled:
            rk.use_sampled_reranks()
        rk.quiet_fast_path = fast
        rk.on_prefill_done()
        requests.append(rk)
    quiet = []
    fast_step = requests[0]._quiet_step
    requests[0]._quiet_step = lambda: quiet.append(1) or fast_step()
    for _ in range(150):
        a, b = (rk.on_decode_step() for rk in requests)
        assert a == b
        if a.is_reloading:
            for rk in requests:
                rk.on_reload_done()
    assert requests[0].device_pages == requests[1].device_pages
    assert (len(quiet) > 100) == (requests[0].num_offload_heads > 0)  # taken once ranked (OFFLOAD heads only)
