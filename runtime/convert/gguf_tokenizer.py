"""tokenizer.json, tokenizer_config.json and generation_config.json rebuilt from a GGUF vocabulary.

Byte-level BPE ("gpt2") vocabularies only; sentencepiece ("llama") ones are refused by name.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, processors

from tessera.runtime.convert.errors import ConversionError
from tessera.runtime.convert.gguf_file import GGUFFile
from tessera.runtime.convert.pretokenizers import PreTokenizer, pre_tokenizer_for

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6  # gguf.TokenType


@dataclass
class TokenizerFiles:
    """The three JSON documents of a converted tokenizer, ready to write."""

    tokenizer: Tokenizer
    tokenizer_config: dict
    generation_config: dict
    pre: PreTokenizer

    def write(self, folder: Path) -> None:
        self.tokenizer.save(str(folder / "tokenizer.json"))
        for name, doc in (("tokenizer_config.json", self.tokenizer_config),
                          ("generation_config.json", self.generation_config)):
            (folder / name).write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")


def build_tokenizer(file: GGUFFile, context_length: int) -> TokenizerFiles:
    kind = file.require("tokenizer.ggml.model")
    if kind != "gpt2":
        raise ConversionError(
            f"{file.path}: tokenizer.ggml.model={kind!r} is not supported; tessera-convert rebuilds only "
            "byte-level BPE vocabularies ('gpt2': Llama 3, SmolLM2...), not sentencepiece ones ('llama': Llama 2, "
            "Mistral 7B, TinyLlama)"
        )
    tokens = _tokens(file)
    types = file.get("tokenizer.ggml.token_type") or [NORMAL] * len(tokens)
    if not file.has("tokenizer.ggml.merges"):
        raise ConversionError(f"{file.path}: tokenizer.ggml.merges is missing; a BPE vocabulary needs its merges")
    # llama.cpp splits a merge at the first space after position 0 (a merge may start with a space)
    merges = [(m[:i], m[i + 1:]) for m in file.get("tokenizer.ggml.merges") if (i := m.find(" ", 1)) > 0]
    pre = pre_tokenizer_for(file.get("tokenizer.ggml.pre"), file.path)

    vocab = {token: i for i, token in enumerate(tokens)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=pre.ignore_merges, fuse_unk=False))
    tok.pre_tokenizer = pre.build()
    tok.decoder = decoders.ByteLevel()
    # llama.cpp matches these whole in the text before any regex; CONTROL/UNKNOWN ones are special
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t, k in zip(tokens, types) if k in (CONTROL, UNKNOWN)])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t, k in zip(tokens, types) if k == USER_DEFINED])

    ids = {name: file.get(f"tokenizer.ggml.{key}") for name, key in
           (("bos", "bos_token_id"), ("eos", "eos_token_id"), ("unk", "unknown_token_id"),
            ("pad", "padding_token_id"), ("eot", "eot_token_id"), ("eom", "eom_token_id"))}
    for name, token_id in ids.items():
        if token_id is not None and not 0 <= token_id < len(tokens):
            raise ConversionError(f"{file.path}: tokenizer.ggml.{name} id {token_id} is outside the vocabulary")
    add_bos = bool(file.get("tokenizer.ggml.add_bos_token", pre.add_bos))
    add_eos = bool(file.get("tokenizer.ggml.add_eos_token", False))
    tok.post_processor = _post_processor(tokens, ids, add_bos, add_eos, file.path)

    name = lambda i: tokens[i] if i is not None else None  # noqa: E731
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": name(ids["bos"]),
        "eos_token": name(ids["eos"]),
        "unk_token": name(ids["unk"]),
        "pad_token": name(ids["pad"]),
        "add_bos_token": add_bos,
        "add_eos_token": add_eos,
        "clean_up_tokenization_spaces": pre.clean_spaces,
        "model_max_length": context_length,
    }
    if file.has("tokenizer.chat_template"):
        config["chat_template"] = file.get("tokenizer.chat_template")
    # generation stops at the GGUF's eos and at its explicit end-of-turn/message tokens, if any
    stops = list(dict.fromkeys(i for i in (ids["eos"], ids["eot"], ids["eom"]) if i is not None))
    generation = {"bos_token_id": ids["bos"], "eos_token_id": stops[0] if len(stops) == 1 else stops or None}
    if ids["pad"] is not None:
        generation["pad_token_id"] = ids["pad"]
    return TokenizerFiles(tok, config, generation, pre)


def _tokens(file: GGUFFile) -> list[str]:
    tokens = list(file.require("tokenizer.ggml.tokens"))
    for i, t in enumerate(tokens):
        if not t:
            tokens[i] = f"[EMPTY_{i}]"  # as llama.cpp names empty tokens
    if len(set(tokens)) != len(tokens):
        seen, dup = set(), None
        for t in tokens:
            if t in seen:
                dup = t
                break
            seen.add(t)
        raise ConversionError(f"{file.path}: tokenizer.ggml.tokens lists {dup!r} twice; llama.cpp refuses this too")
    return tokens


def _post_processor(tokens: list[str], ids: dict, add_bos: bool, add_eos: bool, path: Path):
    if not (add_bos or add_eos):
        return None
    for flag, key in ((add_bos, "bos"), (add_eos, "eos")):
        if flag and ids[key] is None:
            raise ConversionError(f"{path}: tokenizer.ggml.add_{key}_token is true but no {key} token id is given")
    bos = [tokens[ids["bos"]]] if add_bos else []
    eos = [tokens[ids["eos"]]] if add_eos else []
    single = " ".join([*bos, "$A", *eos])
    pair = " ".join([*bos, "$A", *eos, *bos, "$B", *eos])
    specials = [(tokens[ids[k]], ids[k]) for k, flag in (("bos", add_bos), ("eos", add_eos)) if flag]
    return processors.TemplateProcessing(single=single, pair=pair, special_tokens=list(dict.fromkeys(specials)))
