"""The tokenizer rebuilt from a GGUF vocabulary: same ids as transformers' GGUF tokenizer, and the
pre-tokenizer llama.cpp picks from tokenizer.ggml.pre (checked piece by piece against its regexes).

transformers 5.23 has no entry for `smollm` in GGUF_PRE_TOKENIZER_SPLITS, so its tokenizer does not
isolate digits (llama.cpp and SmolLM2's own tokenizer.json do): ids are compared with it on digit-free
text, and the digit rule is checked separately against llama.cpp's regex sequence.
"""
import json
import logging

import pytest
from tokenizers import Tokenizer

from tessera.runtime.convert import ConversionError, convert_gguf
from tessera.runtime.convert.pretokenizers import DEFAULT, GPT2, GROUPS, LLAMA3
from tests.runtime.convert.tiny_gguf import TinySpec, vocabulary, write_tiny_gguf

regex = pytest.importorskip("regex", reason="regex (a transformers dependency) spells llama.cpp's \\p{L}/\\p{N} classes")

DIGIT_FREE = [
    "The quick brown fox jumps over the lazy dog.",
    "It's a test, isn't it? We'll see: they're here, I'd say.",
    "Café, naïve, déjà vu — ünïcödé! 漢字 and emoji 🦊",
    "    indented code: def f(x): return x * y  # comment\n\n\tdone  ",
    "<|im_start|>user\nhello <tool> world<|im_end|>\n<|endoftext|>",
    "trailing spaces   ",
]
WITH_DIGITS = ["In 2024 there were 12345 foxes", "3.14159 and 1,000,000", "x2 a1b2c3 ٣ ½"]


def converted(tmp_path, pre="smollm", **kw):
    gguf_path = write_tiny_gguf(tmp_path / "tiny.gguf", TinySpec(pre=pre, **kw))
    convert_gguf(gguf_path, tmp_path / "hf", progress=False)
    return gguf_path, tmp_path / "hf"


def ours(folder):
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    return lambda text: tok.encode(text, add_special_tokens=False).ids


def transformers_ids(gguf_path):
    pytest.importorskip("transformers", reason="transformers (the dev extra) is the oracle")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    return lambda text: tok.encode(text, add_special_tokens=False)


def llama_cpp_pieces(text, regexes):
    """llama.cpp's unicode_regex_split: each regex splits every piece, matches and gaps both kept."""
    pieces = [text]
    for pattern in regexes:
        out = []
        for piece in pieces:
            at = 0
            for m in regex.finditer(pattern, piece):
                if m.start() > at:
                    out.append(piece[at:m.start()])
                if m.end() > m.start():
                    out.append(m.group())
                at = m.end()
            if at < len(piece):
                out.append(piece[at:])
        pieces = out
    return pieces


def pieces(folder, text):
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    from tokenizers import decoders

    byte_decoder = decoders.ByteLevel()
    return [byte_decoder.decode([p]) for p, _ in tok.pre_tokenizer.pre_tokenize_str(text)]


def test_ids_equal_transformers_on_digit_free_text(tmp_path):
    gguf_path, folder = converted(tmp_path)
    encode, oracle = ours(folder), transformers_ids(gguf_path)
    for text in DIGIT_FREE:
        assert encode(text) == oracle(text), text
    assert encode("<|im_end|>") == [2] and encode("<tool>") == [len(vocabulary()[0]) - 1]


def test_smollm_isolates_every_digit_like_llama_cpp(tmp_path):
    gguf_path, folder = converted(tmp_path)
    encode, oracle = ours(folder), transformers_ids(gguf_path)
    tokens = vocabulary()[0]
    for text in WITH_DIGITS:
        assert pieces(folder, text) == llama_cpp_pieces(text, GROUPS["smollm"].regexes), text
    ids = encode("12345")
    assert [tokens[i] for i in ids] == list("12345")
    # the trained vocabulary merges digits ("00", "Ġ202"...), which transformers' tokenizer then uses
    assert oracle("12345") != ids and len(oracle("In 2024")) < len(encode("In 2024"))


@pytest.mark.parametrize("pre,regexes", [("gpt-2", (GPT2,)), ("llama-bpe", (LLAMA3,)), ("default", DEFAULT.regexes)])
def test_other_pre_types_split_as_llama_cpp(tmp_path, pre, regexes):
    _, folder = converted(tmp_path, pre=pre)
    for text in DIGIT_FREE + WITH_DIGITS + ["$12,345.67 <=> a|b ~x^2", "Hello\r\n\r\nWorld  !!"]:
        assert pieces(folder, text) == llama_cpp_pieces(text, regexes), (pre, text)


@pytest.mark.parametrize("pre", ["gpt-2", "llama-bpe"])
def test_other_pre_types_equal_transformers(tmp_path, pre):
    """transformers has these two (GPT-2's ByteLevel regex; llama-bpe in its split table): digits too."""
    gguf_path, folder = converted(tmp_path, pre=pre)
    encode, oracle = ours(folder), transformers_ids(gguf_path)
    for text in DIGIT_FREE + WITH_DIGITS:
        assert encode(text) == oracle(text), (pre, text)


def test_tokenizer_and_generation_config(tmp_path):
    _, folder = converted(tmp_path)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert (config["bos_token"], config["eos_token"], config["unk_token"], config["pad_token"]) == (
        "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|im_end|>")
    assert config["add_bos_token"] is False and config["add_eos_token"] is False
    assert config["chat_template"].startswith("{% for message in messages %}")
    assert config["model_max_length"] == 256
    generation = json.loads((folder / "generation_config.json").read_text())
    assert generation == {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2}


@pytest.mark.parametrize("add_bos,expected", [(None, True), (False, False)])
def test_llama3_pre_adds_bos_unless_the_file_says_not(tmp_path, add_bos, expected):
    """llama.cpp: a llama3-type vocabulary adds BOS unless tokenizer.ggml.add_bos_token says otherwise,
    and takes a piece that is itself a token whole (ignore_merges)."""
    gguf_path = write_tiny_gguf(tmp_path / "tiny.gguf", TinySpec(pre="llama-bpe", add_bos=add_bos))
    convert_gguf(gguf_path, tmp_path / "hf", progress=False)
    tok = Tokenizer.from_file(str(tmp_path / "hf" / "tokenizer.json"))
    assert json.loads(tok.to_str())["model"]["ignore_merges"] is True
    assert (tok.encode("hi").ids[0] == 1) is expected
    assert json.loads((tmp_path / "hf" / "tokenizer_config.json").read_text())["add_bos_token"] is expected


def test_tessera_tokenizer_loads_the_folder(tmp_path):
    from tessera.runtime.tokenizer import load_tokenizer

    _, folder = converted(tmp_path)
    tok = load_tokenizer(folder)
    assert tok.encode(DIGIT_FREE[0]) == ours(folder)(DIGIT_FREE[0])
    assert tok.decode(tok.encode(DIGIT_FREE[2])) == DIGIT_FREE[2]


def test_unknown_pre_tokenizer_is_refused(tmp_path):
    gguf_path = write_tiny_gguf(tmp_path / "tiny.gguf", TinySpec(pre="mystery-bpe"))
    with pytest.raises(ConversionError, match=r"tokenizer.ggml.pre='mystery-bpe' is not a pre-tokenizer"):
        convert_gguf(gguf_path, tmp_path / "hf", progress=False)
    assert not (tmp_path / "hf").exists()


def test_sentencepiece_vocabulary_is_refused(tmp_path):
    gguf_path = write_tiny_gguf(tmp_path / "tiny.gguf", TinySpec(tokenizer_model="llama"))
    with pytest.raises(ConversionError, match=r"tokenizer.ggml.model='llama' is not supported.*sentencepiece"):
        convert_gguf(gguf_path, tmp_path / "hf", progress=False)


def test_missing_pre_type_falls_back_to_default_with_a_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        _, folder = converted(tmp_path, pre=None)
    assert "no tokenizer.ggml.pre" in caplog.text
    assert pieces(folder, "$1,234 ok") == llama_cpp_pieces("$1,234 ok", DEFAULT.regexes)
