"""Tokenizers with one small interface, following transformers' conventions for a checkpoint folder.

encode(text) adds the special tokens the checkpoint's tokenizer adds (BOS for Llama, none for SmolLM2)
and encode(text, add_special_tokens=False) does not; decode(ids) drops specials; apply_chat_template
renders the checkpoint's chat template. ByteTokenizer is the shipped model's vocabulary (UTF-8 bytes +
specials); HFTokenizer wraps a checkpoint's tokenizer.json through the `tokenizers` library.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Protocol

from tessera.runtime.chat_template import find_chat_template, render_chat_template
from tessera.runtime.errors import CheckpointError

BYTE_SPECIALS = ("<bos>", "<eos>", "<pad>", "<unused0>", "<unused1>", "<unused2>", "<unused3>", "<unused4>")


class Tokenizer(Protocol):
    bos_id: int
    eos_id: int
    vocab_size: int

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...


class ByteTokenizer:
    """Token i < 256 is byte i of the UTF-8 text; 256.. are BYTE_SPECIALS (never produced from text).

    encode adds <bos> first (the shipped model was trained on rows that start with it)."""

    kind = "byte"

    def __init__(self, add_bos_token: bool = True):
        self.special_ids = {name: 256 + i for i, name in enumerate(BYTE_SPECIALS)}
        self.bos_id = self.special_ids["<bos>"]
        self.eos_id = self.special_ids["<eos>"]
        self.pad_id = self.special_ids["<pad>"]
        self.vocab_size = 256 + len(BYTE_SPECIALS)
        self.add_bos_token = add_bos_token
        self.chat_template = None

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        ids = list(text.encode("utf-8"))
        return [self.bos_id] + ids if add_special_tokens and self.add_bos_token else ids

    def decode(self, ids: list[int]) -> str:
        # specials are dropped; a byte sequence cut mid-character decodes with U+FFFD
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")

    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = True, **kwargs) -> str:
        raise ValueError("the byte tokenizer has no chat template; pass the prompt as plain text")

    def describe(self) -> dict:
        return {"type": "byte", "vocab_size": self.vocab_size, "specials": self.special_ids,
                "add_bos_token": self.add_bos_token}


class HFTokenizer:
    """A Hugging Face tokenizer folder: tokenizer.json, plus tokenizer_config.json for the special tokens
    and the chat template.

    Special tokens are added as tokenizer.json's post-processor says, which is what transformers 5 does
    (its tokenizers follow the post-processor, whatever tokenizer_config.json's add_bos_token says).
    """

    kind = "hf"

    def __init__(self, path: str | Path, tokenizer_config: dict | None = None, bos_id: int | None = None,
                 eos_id: int | None = None, chat_template: str | None = None):
        from tokenizers import Tokenizer as _HFTokenizer

        path = Path(path)
        try:
            self._tok = _HFTokenizer.from_file(str(path))
        except Exception as err:  # the Rust library raises bare Exceptions for malformed files
            raise CheckpointError(f"{path} cannot be read by the tokenizers library ({err}); the file is "
                                  "damaged or not a tokenizer.json") from None
        self.config = tokenizer_config or {}
        self.vocab_size = self._tok.get_vocab_size(with_added_tokens=True)
        self.special_tokens = {name: self._token_id(name, path) for name in ("bos_token", "eos_token", "pad_token",
                                                                             "unk_token")}
        self.bos_id = _first(self.special_tokens["bos_token"], bos_id, -1)
        self.eos_id = _first(self.special_tokens["eos_token"], eos_id, -1)
        self.chat_template = chat_template
        adds_bos = self.bos_id >= 0 and self._tok.encode("a").ids[:1] == [self.bos_id]
        if "add_bos_token" in self.config and bool(self.config["add_bos_token"]) != adds_bos:
            warnings.warn(f"{path.parent}: tokenizer_config.json says add_bos_token="
                          f"{self.config['add_bos_token']} but tokenizer.json's post-processor "
                          f"{'adds' if adds_bos else 'does not add'} BOS; Tessera follows tokenizer.json, "
                          "as transformers 5 does", stacklevel=2)

    def _token_id(self, name: str, path: Path) -> int | None:
        token = self.config.get(name)
        if isinstance(token, dict):  # a serialised AddedToken
            token = token.get("content")
        if token is None:
            return None
        token_id = self._tok.token_to_id(token)
        if token_id is None:
            raise CheckpointError(f"{path.parent / 'tokenizer_config.json'}: {name}={token!r} is not in "
                                  f"{path.name}'s vocabulary")
        return token_id

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return self._tok.encode(text, add_special_tokens=add_special_tokens).ids

    def decode(self, ids: list[int]) -> str:
        return self._tok.decode(ids, skip_special_tokens=True)

    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = True, **kwargs: Any) -> str:
        """The conversation as the model's chat template renders it (encode it with add_special_tokens=False,
        as transformers does: the template writes its own specials)."""
        if not self.chat_template:
            raise ValueError("this checkpoint has no chat template (tokenizer_config.json chat_template or "
                             "chat_template.jinja); pass the prompt as plain text")
        specials = {name: self.config.get(name) if not isinstance(self.config.get(name), dict)
                    else self.config[name].get("content") for name in self.special_tokens}
        return render_chat_template(self.chat_template, messages, add_generation_prompt, specials, **kwargs)


def load_tokenizer(checkpoint_dir: str | Path) -> ByteTokenizer | HFTokenizer:
    """tokenizer.json when the folder has one, else the byte tokenizer described in tokenizer_config.json."""
    folder = Path(checkpoint_dir)
    tok_config = _read_json(folder / "tokenizer_config.json")
    if (folder / "tokenizer.json").exists():
        bos_id, eos_id = _special_ids_from_config(folder / "config.json")
        return HFTokenizer(folder / "tokenizer.json", tok_config, bos_id, eos_id,
                           find_chat_template(folder, tok_config))
    if tok_config is not None and tok_config.get("type") == "byte":
        return ByteTokenizer(add_bos_token=bool(tok_config.get("add_bos_token", True)))
    raise FileNotFoundError(
        f"{folder} has neither tokenizer.json nor a byte tokenizer_config.json ({{'type': 'byte'}})"
    )


def generation_eos_ids(checkpoint_dir: str | Path) -> set[int]:
    """Token ids that end generation: generation_config.json's eos_token_id (int or list), else config.json's
    (transformers builds its generation config from config.json when the file is absent)."""
    folder = Path(checkpoint_dir)
    for name in ("generation_config.json", "config.json"):
        data = _read_json(folder / name)
        if data is not None and data.get("eos_token_id") is not None:
            eos = data["eos_token_id"]
            return set(eos) if isinstance(eos, list) else {int(eos)}
    return set()


def _read_json(path: Path) -> dict | None:
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is not valid JSON ({err}); re-save it") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} holds a JSON {type(data).__name__}, not an object")
    return data


def _first(*values):
    return next(v for v in values if v is not None)


def _special_ids_from_config(config_path: Path) -> tuple[int | None, int | None]:
    hf = _read_json(config_path)
    if hf is None:
        return None, None
    eos = hf.get("eos_token_id")
    return hf.get("bos_token_id"), eos[0] if isinstance(eos, list) else eos
