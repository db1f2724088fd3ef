"""Prompt KV shared across engines (runtime/prompt_kv.py): a prefill restored from the store gives the
same tokens and log-probs as one computed, under full and sparse policies, in batches that mix restored
prefills, computed prefills and decodes; a store refuses a second model."""
import pytest
import torch

from tessera.runtime.config import ModelConfig
from tessera.runtime.engine import Engine, EngineConfig
from tessera.runtime.model import Transformer
from tessera.runtime.prompt_kv import PromptKVStore
from tessera.runtime.sequence import FREE, SamplingParams

VOCAB = 64


def tiny_model(seed=0):
    config = ModelConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, eos_token_id=63)
    model = Transformer(config)
    model.init_weights(seed=seed, std=0.2)
    return model.eval()


@pytest.fixture(scope="module")
def tiny():
    return tiny_model()


def prompts(lengths=(40, 100, 130), seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, VOCAB - 1, (n,), generator=g).tolist() for n in lengths]


PARAMS = SamplingParams(max_tokens=20, forced_token_ids=(3, FREE, 5, FREE, FREE, 7) * 3, logprobs=True)
SPARSE = {"quest": {"topk_pages": 3}, "flexicache": {"topk_pages": 3, "rerank_interval": 4},
          "streaming": {"sink_tokens": 16, "window_tokens": 32}}


def run(model, policy, store, batch, arrivals=None):
    eng = Engine(model, config=EngineConfig(kvpolicy=policy, kvpolicy_params=SPARSE.get(policy, {}),
                                            num_device_blocks=800, host_kv_gib=0.01, max_num_batched_tokens=48),
                 prompt_kv=store)
    ids = [eng.add_request(p, PARAMS, arrival_s=None if arrivals is None else arrivals[j])
           for j, p in enumerate(batch)]
    eng.run()
    return eng, [(eng.sequences[i].output_token_ids, eng.sequences[i].output_logprobs) for i in ids]


@pytest.mark.parametrize("policy", ["full", "quest", "flexicache", "streaming"])
def test_a_restored_prefill_decodes_like_a_computed_one(tiny, policy):
    store = PromptKVStore()
    first, _ = run(tiny, "full", store, prompts())
    assert len(store) == 3 and first.num_restored_tokens == 0
    again, restored = run(tiny, policy, store, prompts())
    assert again.num_restored_tokens == 40 + 100 + 130
    _, computed = run(tiny, policy, None, prompts())
    for (t_r, lp_r), (t_c, lp_c) in zip(restored, computed):
        assert t_r == t_c
        torch.testing.assert_close(torch.tensor(lp_r), torch.tensor(lp_c), atol=1e-4, rtol=1e-4)


def test_restored_computed_and_decoding_requests_share_a_batch(tiny):
    store = PromptKVStore()
    run(tiny, "full", store, prompts((100,), seed=2))  # only the second prompt below is stored
    batch = prompts((60,), seed=9) + prompts((100,), seed=2) + prompts((30,), seed=5)
    arrivals = [0.0, 0.0, 0.0]
    eng, mixed = run(tiny, "quest", store, batch, arrivals)
    assert eng.num_restored_tokens == 100 and len(store) == 3  # the other two were recorded
    _, plain = run(tiny, "quest", None, batch, arrivals)
    for (t_r, lp_r), (t_c, lp_c) in zip(mixed, plain):
        assert t_r == t_c
        torch.testing.assert_close(torch.tensor(lp_r), torch.tensor(lp_c), atol=1e-4, rtol=1e-4)


def test_a_store_belongs_to_one_model(tiny):
    store = PromptKVStore()
    run(tiny, "full", store, prompts((20,)))
    with pytest.raises(ValueError, match="another model"):
        run(tiny_model(seed=1), "full", store, prompts((20,)))
