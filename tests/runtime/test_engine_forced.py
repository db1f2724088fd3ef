"""Forced (teacher-forced) decoding in the engine: with `full` the recorded log-probs of forced tokens are
those of a plain forward pass (and the check is sharp enough to catch an off-by-one or a sparse policy),
FREE entries are decoded greedily in between, forced tokens never stop a request, preemption keeps the
log-probs aligned with the tokens."""
import pytest
import torch

from tessera.runtime.checkpoint import load_checkpoint, save_checkpoint
from tessera.runtime.config import ModelConfig
from tessera.runtime.engine import Engine, EngineConfig
from tessera.runtime.model import Transformer
from tessera.runtime.sequence import FREE, SamplingParams

VOCAB = 64


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    config = ModelConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, eos_token_id=63)
    model = Transformer(config)
    model.init_weights(seed=0, std=0.2)
    folder = tmp_path_factory.mktemp("tiny_forced")
    save_checkpoint(model, folder)
    return load_checkpoint(folder)


def tokens(n: int, seed: int) -> list[int]:
    return torch.randint(0, VOCAB - 1, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def engine(model, policy="full", params=None, **kw):
    kw.setdefault("num_device_blocks", 600)
    kw.setdefault("max_num_batched_tokens", 32)  # chunked prefill
    return Engine(model, config=EngineConfig(kvpolicy=policy, kvpolicy_params=params or {}, host_kv_gib=0.01, **kw))


def reference_logprobs(model, prompt: list[int], forced: list[int]) -> torch.Tensor:
    """log p(forced[i] | prompt + forced[:i]) from one plain (non-paged) forward over the whole sequence."""
    seq = torch.tensor([prompt + forced])
    with torch.no_grad():
        lp = torch.log_softmax(model(seq)[0].float(), dim=-1)
    rows = torch.arange(len(prompt) - 1, len(prompt) - 1 + len(forced))
    return lp[rows, torch.tensor(forced)]


def run_forced(eng, prompts, forced):
    ids = [eng.add_request(p, SamplingParams(max_tokens=len(f), forced_token_ids=tuple(f), logprobs=True))
           for p, f in zip(prompts, forced)]
    eng.run()
    return [eng.sequences[i] for i in ids]


def test_full_forced_logprobs_equal_a_plain_forward(tiny):
    prompts = [tokens(n, seed=n) for n in (7, 45, 90)]
    forced = [tokens(30, seed=100 + i) for i in range(3)]
    seqs = run_forced(engine(tiny), prompts, forced)
    for s, p, f in zip(seqs, prompts, forced):
        assert s.output_token_ids == f
        assert len(s.output_logprobs) == len(f)
        torch.testing.assert_close(torch.tensor(s.output_logprobs), reference_logprobs(tiny, p, f),
                                   atol=1e-4, rtol=1e-4)


def test_the_comparison_fails_when_shifted_or_when_a_sparse_policy_drops_context(tiny):
    prompt, forced = tokens(160, seed=1), tokens(40, seed=2)
    ref = reference_logprobs(tiny, prompt, forced)
    got = torch.tensor(run_forced(engine(tiny), [prompt], [forced])[0].output_logprobs)
    assert not torch.allclose(got[1:], ref[:-1], atol=1e-3)  # an off-by-one would be caught
    window = engine(tiny, "streaming", {"sink_tokens": 16, "window_tokens": 16})  # 2 of 13 pages attended
    sparse = torch.tensor(run_forced(window, [prompt], [forced])[0].output_logprobs)
    assert torch.allclose(sparse[0], ref[0], atol=1e-4)  # output token 0 comes from the (dense) prefill
    assert (sparse[1:] - ref[1:]).abs().max() > 1e-2  # the policy acts on every forced decode step


def test_free_entries_are_greedy_between_forced_tokens(tiny):
    prompt = tokens(50, seed=4)
    pattern = [5, FREE, FREE, 9, 9, FREE, 3, FREE]
    s = engine(tiny).generate([prompt], SamplingParams(max_tokens=10, forced_token_ids=tuple(pattern)))[0]
    expected, seq = [], list(prompt)
    with torch.no_grad():
        for i in range(10):
            t = pattern[i] if i < len(pattern) and pattern[i] != FREE else int(tiny(torch.tensor([seq]))[0, -1].argmax())
            expected.append(t)
            seq.append(t)
    assert s == expected


def test_forced_tokens_never_stop_a_request(tiny):
    eos = tiny.config.eos_token_id
    params = SamplingParams(max_tokens=6, forced_token_ids=(eos, 1, eos, 2), stop_token_ids=(1,))
    eng = engine(tiny)
    out = eng.generate([tokens(20, seed=5)], params)[0]
    assert out[:4] == [eos, 1, eos, 2] and len(out) == 6


def test_preemption_keeps_logprobs_aligned(tiny):
    prompts = [tokens(30, seed=10 + i) for i in range(4)]
    forced = [tokens(24, seed=20 + i) for i in range(4)]
    eng = engine(tiny, num_device_blocks=40, max_num_seqs=4, watermark=0.0)
    seqs = run_forced(eng, prompts, forced)
    assert sum(s.num_preemptions for s in seqs) > 0
    for s, p, f in zip(seqs, prompts, forced):
        torch.testing.assert_close(torch.tensor(s.output_logprobs), reference_logprobs(tiny, p, f),
                                   atol=1e-4, rtol=1e-4)


def test_bad_forced_ids_are_rejected(tiny):
    with pytest.raises(ValueError, match="forced_token_ids"):
        SamplingParams(forced_token_ids=(3, -2))
    with pytest.raises(ValueError, match="vocabulary size"):
        engine(tiny).add_request([1, 2], SamplingParams(forced_token_ids=(VOCAB,)))
