"""The runtime engine on tiny random-weight checkpoints (and on the shipped model when it exists):
`full` matches a plain non-paged forward token for token, every KV policy runs with its page moves
executed and its accounting matching the allocator, preemption by recompute loses nothing, records fill
the shared results schema."""
import math

import pytest
import torch

from tessera.paths import REPO_ROOT
from tessera.results.schema import conform
from tessera.runtime.checkpoint import load_checkpoint, save_checkpoint
from tessera.runtime.config import ModelConfig
from tessera.runtime.engine import Engine, EngineConfig
from tessera.runtime.model import Transformer
from tessera.runtime.sequence import SamplingParams

SHIPPED = REPO_ROOT / "models" / "tessera-tiny-byte"
POLICIES = {  # small budgets so a ~100-token request ranks, offloads, reloads and drops pages
    "full": {},
    "quest": {"topk_pages": 3},
    "streaming": {"sink_tokens": 16, "window_tokens": 32},
    "head_split": {"sink_tokens": 16, "window_tokens": 32},
    "flexicache": {"topk_pages": 3, "rerank_interval": 4},
    "flexicache_adaptive": {"topk_pages": 3},
}
LARGE = {"quest": {"topk_pages": 64}, "flexicache": {"topk_pages": 64, "rerank_interval": 4},
         "flexicache_adaptive": {"topk_pages": 64}, "streaming": {"sink_tokens": 16, "window_tokens": 1008}}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    config = ModelConfig(vocab_size=64, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, eos_token_id=63)
    model = Transformer(config)
    model.init_weights(seed=0, std=0.2)  # peaky logits: greedy ties are improbable
    folder = tmp_path_factory.mktemp("tiny")
    save_checkpoint(model, folder)
    return load_checkpoint(folder)


def prompts_for(vocab: int, lengths=(5, 40, 75), seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, vocab - 1, (n,), generator=g).tolist() for n in lengths]


def reference_greedy(model, prompt, n):
    """Plain non-paged forward (Transformer.forward over the whole sequence) for every token."""
    tokens = list(prompt)
    with torch.no_grad():
        for _ in range(n):
            tokens.append(int(model(torch.tensor([tokens]))[0, -1].argmax()))
    return tokens[len(prompt):]


def engine(model, policy="full", **kw):
    kw.setdefault("num_device_blocks", 400)
    kw.setdefault("host_kv_gib", 0.01)
    kw.setdefault("max_num_batched_tokens", 32)  # chunked prefill of the longer prompts
    params = kw.pop("params", POLICIES.get(policy, {}))
    return Engine(model, config=EngineConfig(kvpolicy=policy, kvpolicy_params=params, **kw))


GREEDY = SamplingParams(max_tokens=24, ignore_eos=True)


def test_full_matches_plain_forward_token_for_token(tiny):
    prompts = prompts_for(64)
    outs = engine(tiny).generate(prompts, GREEDY)
    assert outs == [reference_greedy(tiny, p, 24) for p in prompts]


@pytest.mark.parametrize("policy", sorted(LARGE))
def test_sparse_policies_with_a_budget_over_the_context_equal_full(tiny, policy):
    prompts = prompts_for(64)
    outs = engine(tiny, policy, params=LARGE[policy]).generate(prompts, GREEDY)
    assert outs == [reference_greedy(tiny, p, 24) for p in prompts]


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_every_policy_runs_with_its_moves_executed(tiny, policy):
    eng = engine(tiny, policy)  # check_invariants: blocks held == RequestKV.device_pages after every event
    outs = eng.generate(prompts_for(64, (40, 100)), SamplingParams(max_tokens=40, ignore_eos=True))
    assert [len(o) for o in outs] == [40, 40]
    assert eng.cache.device_blocks.num_used == 0 and eng.cache.host_blocks.num_used == 0
    assert eng.cache.minmax_blocks.num_used == 0
    moved = eng.records()["bytes_moved"].sum()
    assert (moved > 0) == policy.startswith("flexicache")


def test_flexicache_keeps_fewer_pages_on_device_than_full(tiny):
    peaks = {}
    for policy in ("full", "flexicache"):
        eng = engine(tiny, policy)
        eng.generate(prompts_for(64, (150,)), SamplingParams(max_tokens=40, ignore_eos=True))
        peaks[policy] = eng.kv_usage()["used_blocks"].iloc[-2]  # last step before the finish
    assert peaks["flexicache"] < peaks["full"]


def test_preemption_by_recompute_loses_nothing(tiny):
    prompts = prompts_for(64, (30, 30, 30, 30), seed=3)
    eng = engine(tiny, num_device_blocks=40, max_num_seqs=4, watermark=0.0)  # 10 pages of 4 heads
    outs = eng.generate(prompts, GREEDY)
    records = eng.records()
    assert records["preemptions"].sum() > 0
    assert (records["status"] == "finished").all()
    assert outs == [reference_greedy(tiny, p, 24) for p in prompts]
    assert eng.cache.device_blocks.num_used == 0


def test_stop_tokens_eos_and_max_tokens(tiny):
    prompt = prompts_for(64, (20,))[0]
    ref = reference_greedy(tiny, prompt, 10)
    eng = engine(tiny)
    a = eng.add_request(prompt, SamplingParams(max_tokens=10, stop_token_ids=(ref[3],)))
    b = eng.add_request(prompt, SamplingParams(max_tokens=5))
    eng.run()
    assert eng.sequences[a].output_token_ids == ref[:ref.index(ref[3]) + 1]
    assert eng.sequences[a].finish_reason == "stop"
    assert eng.sequences[b].output_token_ids == ref[:5] and eng.sequences[b].finish_reason == "length"
    eos_eng = Engine(tiny, config=EngineConfig(num_device_blocks=100))
    eos_eng.eos_ids = {ref[0]}
    assert eos_eng.generate([prompt], SamplingParams(max_tokens=10)) == [ref[:1]]


def test_temperature_sampling_is_seeded(tiny):
    params = SamplingParams(temperature=1.0, top_p=0.9, max_tokens=12, ignore_eos=True, seed=7)
    prompt = prompts_for(64, (10,))[0]
    a = engine(tiny).generate([prompt], params)
    b = engine(tiny).generate([prompt], params)
    assert a == b and len(a[0]) == 12


def test_records_fill_the_results_schema_with_ordered_times(tiny):
    eng = engine(tiny, "flexicache")
    for i, p in enumerate(prompts_for(64, (10, 50))):
        eng.add_request(p, SamplingParams(max_tokens=8, ignore_eos=True), arrival_s=0.05 * i)
    eng.run()
    frame = conform(eng.records())
    assert list(frame["output_tokens"]) == [8, 8]
    for r in frame.itertuples():
        assert r.arrival_s <= r.start_s <= r.first_token_s <= r.finish_s and not math.isnan(r.finish_s)
    assert frame["start_s"].iloc[1] >= 0.05  # not admitted before its arrival on the engine clock


@pytest.mark.skipif(not (SHIPPED / "config.json").exists(),
                    reason=f"shipped model not trained yet: {SHIPPED} has no config.json")
@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_shipped_model_every_policy_and_full_matches_plain_forward(policy):
    eng = Engine.from_checkpoint(SHIPPED, EngineConfig(kvpolicy=policy, kvpolicy_params=POLICIES[policy],
                                                       num_device_blocks=4000, host_kv_gib=0.05), device="cpu")
    texts = ["Q: What is 2 + 3?\nA:", "The quick brown fox"]
    prompts = [eng.tokenizer.encode(t) for t in texts]  # <bos> + bytes
    outs = eng.generate(prompts, SamplingParams(max_tokens=12, ignore_eos=True))
    assert [len(o) for o in outs] == [12, 12]
    if policy == "full":
        model = eng.model
        assert outs == [reference_greedy(model, p, 12) for p in prompts]
