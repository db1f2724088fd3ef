"""Tokenizers: byte-level round trip and specials; tokenizer.json through the `tokenizers` library."""
import json

from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from tessera.runtime.tokenizer import ByteTokenizer, HFTokenizer, load_tokenizer


def test_byte_round_trip_including_unicode():
    tok = ByteTokenizer()
    text = "def f(x):\n    return x  # naïve — ok ✓"
    ids = tok.encode(text)
    assert all(0 <= i < 256 for i in ids) and tok.decode(ids) == text


def test_byte_specials_are_outside_the_bytes_and_dropped_by_decode():
    tok = ByteTokenizer()
    assert (tok.bos_id, tok.eos_id, tok.pad_id, tok.vocab_size) == (256, 257, 258, 264)
    assert tok.decode([tok.bos_id] + tok.encode("hi") + [tok.eos_id, tok.pad_id]) == "hi"


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
