"""transformers as the oracle: checkpoints it builds and saves load in Tessera and compute the same thing.

Per architecture feature (Llama GQA + llama3/linear/dynamic/yarn RoPE, tied, biases + explicit head_dim;
Mistral with and without a sliding window; Qwen2 with q/k/v biases, with and without sliding layers), in
both config.json layouts, unsharded and sharded, fp32 and bf16: logits equal transformers' within float
tolerance, and greedy generation through the engine (kvpolicy full, chunked prefill, prompts crossing page
boundaries, batched) equals transformers' generate(do_sample=False) token for token.
"""
import pytest
import torch

from tessera.runtime.checkpoint import load_checkpoint
from tessera.runtime.config import ModelConfig
from tessera.runtime.engine import Engine, EngineConfig
from tessera.runtime.sequence import SamplingParams
from tests.runtime.hf_models import VARIANTS, save_hf_model, to_old_layout

pytest.importorskip("transformers", reason="transformers (the dev extra) is the oracle")

PROMPT_LENGTHS = (5, 17, 40, 63)  # pages of 16: inside one page, just past one, several, at a boundary
NEW_TOKENS = 20


def tokens(n=80, vocab=96, seed=0):
    return torch.randint(3, vocab, (1, n), generator=torch.Generator().manual_seed(seed))


def hf_logits(model, ids):
    with torch.no_grad():
        return model(ids).logits.float()


@pytest.mark.parametrize("layout", ["new", "old"])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_fp32_logits_equal_transformers(tmp_path, variant, layout):
    hf = save_hf_model(variant, tmp_path)
    if layout == "old":
        to_old_layout(tmp_path)
    ours = load_checkpoint(tmp_path)
    ids = tokens()
    with torch.no_grad():
        got = ours(ids)
    expected = hf_logits(hf, ids)
    assert (got - expected).abs().max().item() < 2e-5, variant
    assert torch.equal(got.argmax(-1), expected.argmax(-1))


@pytest.mark.parametrize("variant", ["llama_gqa_llama3", "llama_yarn", "mistral_window", "qwen2_window"])
def test_both_layouts_give_the_same_config(tmp_path, variant):
    save_hf_model(variant, tmp_path / "new")
    save_hf_model(variant, tmp_path / "old")
    to_old_layout(tmp_path / "old")
    assert ModelConfig.from_json(tmp_path / "new" / "config.json") == \
        ModelConfig.from_json(tmp_path / "old" / "config.json")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("sharded", [False, True])
@pytest.mark.parametrize("variant", ["llama_gqa_llama3", "llama_tied", "mistral_window", "qwen2"])
def test_dtypes_and_shards_load_as_saved(tmp_path, variant, dtype, sharded):
    hf = save_hf_model(variant, tmp_path, dtype=dtype, sharded=sharded)
    assert len(list(tmp_path.glob("*.safetensors"))) > 1 or not sharded
    ours = load_checkpoint(tmp_path)
    assert ours.model.embed_tokens.weight.dtype == dtype  # the checkpoint's dtype, as transformers loads it
    ids = tokens()
    with torch.no_grad():
        got = ours(ids)
    expected = hf_logits(hf, ids)
    # the same ops in the same order: equal in fp32 and bf16 alike (measured: bitwise); the bound allows
    # for a different CPU's kernels rounding a bf16 step differently
    scale = 2e-5 if dtype == torch.float32 else 1e-2 * expected.abs().max().item()
    assert (got - expected).abs().max().item() <= scale
    assert torch.equal(got.argmax(-1), expected.argmax(-1))


def hf_greedy(model, prompt):
    out = model.generate(torch.tensor([prompt]), max_new_tokens=NEW_TOKENS, do_sample=False,
                         attention_mask=torch.ones(1, len(prompt), dtype=torch.long))
    return out[0, len(prompt):].tolist()


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_engine_greedy_equals_transformers_generate(tmp_path, variant):
    hf = save_hf_model(variant, tmp_path)
    engine = Engine.from_checkpoint(tmp_path, EngineConfig(max_num_batched_tokens=24, num_device_blocks=400,
                                                           max_num_seqs=4), device="cpu")
    assert engine.eos_ids == {2}  # from generation_config.json, as generate uses it
    g = torch.Generator().manual_seed(1)
    prompts = [torch.randint(3, 96, (n,), generator=g).tolist() for n in PROMPT_LENGTHS]
    got = engine.generate(prompts, SamplingParams(max_tokens=NEW_TOKENS))
    for prompt, ours in zip(prompts, got):
        assert ours == hf_greedy(hf, prompt), (variant, len(prompt))
