"""A run's KV-policy setup: sim settings split off from the policy's parameters, bad values refused by name, and
the model's simulated head behaviour (shipped unstable heads where they exist)."""
import numpy as np
import pytest

from tessera.kvcache.head_lists import heads_mask, shipped_unstable_heads
from tessera.models import model
from tessera.sim.kv_setup import KVSetup, KVSimConfig, truth_head_model, used_sim_keys


def test_from_conf_splits_the_simulator_settings_off_the_policy_parameters():
    kv = KVSetup.from_conf({"name": "flexicache", "topk_pages": 32, "host_kv_gib": 10, "rerank_mode": "pages"})
    assert kv.name == "flexicache" and dict(kv.params) == {"topk_pages": 32}
    assert kv.sim == KVSimConfig(host_kv_gib=10, rerank_mode="pages")


@pytest.mark.parametrize("conf, message", [
    ({"name": "nope"}, "kvpolicy.name='nope' is unknown"),
    ({"name": "flexicache", "rerank_mode": "exact"}, "kvpolicy.rerank_mode='exact' is invalid"),
    ({"name": "flexicache", "host_kv_gib": 0}, "kvpolicy.host_kv_gib=0 is invalid"),
    ({"name": "flexicache", "sparse_kernel_efficiency": 1.5}, "kvpolicy.sparse_kernel_efficiency=1.5 is invalid"),
    ({"name": "flexicache", "host_kv_gib": "abc"}, "kvpolicy.host_kv_gib='abc' is invalid"),
    ({"name": "flexicache", "host_kv_gib": float("inf")}, "kvpolicy.host_kv_gib=inf is invalid"),
    ({"name": "flexicache", "minmax_region": "no"}, "kvpolicy.minmax_region='no' is invalid: use true or false"),
    ({"name": "flexicache", "avg_num_tokens_per_req": 1.5}, "kvpolicy.avg_num_tokens_per_req=1.5 is invalid"),
    ({"name": "flexicache", "sparse_kernel_efficiency": float("nan")}, "kvpolicy.sparse_kernel_efficiency=nan"),
])
def test_bad_settings_are_refused_by_name(conf, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.").replace("(", r"\(")):
        KVSetup.from_conf(conf)


def test_the_head_model_uses_the_shipped_unstable_heads_where_they_exist():
    llama = model("Llama-3.1-8B")
    shipped = heads_mask(shipped_unstable_heads(llama.name), (llama.num_layers, llama.num_kv_heads))
    assert np.array_equal(truth_head_model(llama).unstable, shipped)
    mistral = model("Mistral-7B-v0.2")  # no shipped list: a seeded random 25%, the same every time
    a, b = truth_head_model(mistral), truth_head_model(mistral)
    assert np.array_equal(a.unstable, b.unstable) and a.unstable.mean() == pytest.approx(0.25, abs=0.01)


@pytest.mark.parametrize("policy, used", [
    ("flexicache", ("host_kv_gib", "avg_num_tokens_per_req", "minmax_region", "sparse_kernel_efficiency",
                    "rerank_mode")),
    ("quest", ("avg_num_tokens_per_req", "minmax_region", "sparse_kernel_efficiency")),
    ("streaming", ()),
    ("head_split", ()),
])
def test_each_policy_reads_the_simulator_settings_its_heads_need(policy, used):
    """Offloading heads read the host pool and rerank mode, MinMax plans the region, page-list heads the sparse
    kernel's efficiency; what a plan does not read is left out of what ran (and refused when set)."""
    kv = KVSetup.from_conf({"name": policy})
    llama = model("Llama-3.1-8B")
    assert used_sim_keys(kv.policy_for(llama).plan) == used
    ran = kv.ran(llama)
    assert {k for k in ran if k in KVSimConfig.__dataclass_fields__} == set(used)
