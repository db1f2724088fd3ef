"""Tokenizers: byte-level round trip and specials; tokenizer.json through the `tokenizers` library."""
import json

import pytest

from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from tessera.runtime.tokenizer import ByteTokenizer, HFTokenizer, load_tokenizer


def test_byte_round_trip_including_unicode():
    tok = ByteTokenizer()
    text = "def f(x):\n    return x  # naïve — ok ✓"
    ids = tok.encode(text, add_special_tokens=False)
    assert all(0 <= i < 256 for i in ids) and tok.decode(ids) == text
    assert tok.encode(text) == [tok.bos_id] + ids  # the shipped model's rows start with <bos>


def test_byte_specials_are_outside_the_bytes_and_dropped_by_decode():
    tok = ByteTokenizer()
    assert (tok.bos_id, tok.eos_id, tok.pad_id, tok.vocab_size) == (256, 257, 258, 264)
    assert tok.decode(tok.encode("hi") + [tok.eos_id, tok.pad_id]) == "hi"


def _write_tiny_tokenizer_json(path):
    hf = Tokenizer(models.BPE(unk_token="[UNK]"))
    hf.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(vocab_size=80, special_tokens=["[UNK]", "<s>", "</s>"])
    hf.train_from_iterator(["the key is a value", "the value of the key", "keys and values"], trainer)
    hf.save(str(path))


def test_hf_tokenizer_json_round_trip(tmp_path):
    _write_tiny_tokenizer_json(tmp_path / "tokenizer.json")
    (tmp_path / "config.json").write_text(json.dumps({"bos_token_id": 1, "eos_token_id": [2, 0]}))
    tok = load_tokenizer(tmp_path)
    assert isinstance(tok, HFTokenizer) and (tok.bos_id, tok.eos_id) == (1, 2)
    ids = tok.encode("the key is the value")
    assert ids and tok.decode(ids) == "the key is the value"


def test_byte_tokenizer_found_from_tokenizer_config(tmp_path):
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(ByteTokenizer().describe()))
    assert isinstance(load_tokenizer(tmp_path), ByteTokenizer)


# ------------------------------------------------------------------------------ transformers as the oracle
CHATML = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
          "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
          "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
TEXTS = ["def f(x):\n    return x  # naïve — ok ✓", "  leading spaces and 12345 digits", "<|im_start|>user\nhi",
         "tab\there\r\nnewline", ""]


def _save_hf_tokenizer(folder, with_bos: bool):
    """A byte-level BPE trained on stdlib text, saved by transformers (tokenizer.json + tokenizer_config.json
    + chat_template.jinja), with or without a post-processor that adds BOS (Llama 3 vs SmolLM2 style)."""
    import os

    from tokenizers import decoders, processors
    from transformers import PreTrainedTokenizerFast

    hf = Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=500, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    hf.train_from_iterator([open(os.__file__).read()], trainer)
    if with_bos:
        hf.post_processor = processors.TemplateProcessing(single="<|im_start|> $A", special_tokens=[("<|im_start|>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=hf, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                   unk_token="<|endoftext|>", chat_template=CHATML)
    fast.save_pretrained(folder)
    return fast


@pytest.mark.parametrize("with_bos", [False, True])
def test_hf_tokenizer_ids_and_chat_template_equal_transformers(tmp_path, with_bos):
    transformers = pytest.importorskip("transformers")
    _save_hf_tokenizer(tmp_path, with_bos)
    oracle = transformers.AutoTokenizer.from_pretrained(tmp_path)
    ours = load_tokenizer(tmp_path)
    for text in TEXTS:
        assert ours.encode(text) == oracle(text)["input_ids"], text
        assert ours.encode(text, add_special_tokens=False) == oracle(text, add_special_tokens=False)["input_ids"]
        assert ours.decode(ours.encode(text)) == oracle.decode(oracle(text)["input_ids"], skip_special_tokens=True)
    assert (ours.encode("x")[0] == ours.bos_id) == with_bos
    messages = [{"role": "user", "content": "What is 2 + 2?"}, {"role": "assistant", "content": "4"},
                {"role": "user", "content": "And 3 + 3?"}]
    for add in (True, False):
        rendered = ours.apply_chat_template(messages, add_generation_prompt=add)
        assert rendered == oracle.apply_chat_template(messages, add_generation_prompt=add, tokenize=False)
    prompt_ids = ours.encode(ours.apply_chat_template(messages), add_special_tokens=False)
    expected = oracle.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)
    assert prompt_ids == expected["input_ids"]


def test_generation_config_eos_list_stops_generation(tmp_path):
    from tessera.runtime.tokenizer import generation_eos_ids

    (tmp_path / "config.json").write_text(json.dumps({"eos_token_id": 5}))
    assert generation_eos_ids(tmp_path) == {5}
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": [7, 9]}))
    assert generation_eos_ids(tmp_path) == {7, 9}  # generation_config.json wins, as in generate()
