"""Tokenizers with one small interface: encode(str) -> list[int], decode(list[int]) -> str, bos_id, eos_id.

ByteTokenizer is the shipped model's vocabulary (UTF-8 bytes + specials); HFTokenizer wraps a
checkpoint's tokenizer.json through the `tokenizers` library (a real Llama's tokenizer).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

BYTE_SPECIALS = ("<bos>", "<eos>", "<pad>", "<unused0>", "<unused1>", "<unused2>", "<unused3>", "<unused4>")


class Tokenizer(Protocol):
    bos_id: int
    eos_id: int
    vocab_size: int

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...


class ByteTokenizer:
    """Token i < 256 is byte i of the UTF-8 text; 256.. are BYTE_SPECIALS (never produced by encode)."""

    kind = "byte"

    def __init__(self):
        self.special_ids = {name: 256 + i for i, name in enumerate(BYTE_SPECIALS)}
        self.bos_id = self.special_ids["<bos>"]
        self.eos_id = self.special_ids["<eos>"]
        self.pad_id = self.special_ids["<pad>"]
        self.vocab_size = 256 + len(BYTE_SPECIALS)

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: list[int]) -> str:
        # specials are dropped; a byte sequence cut mid-character decodes with U+FFFD
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")

    def describe(self) -> dict:
        return {"type": "byte", "vocab_size": self.vocab_size, "specials": self.special_ids}


class HFTokenizer:
    """A Hugging Face tokenizer.json (e.g. Llama 3's BPE), specials taken from the model config."""

    kind = "hf"

    def __init__(self, path: str | Path, bos_id: int | None = None, eos_id: int | None = None):
        from tokenizers import Tokenizer as _HFTokenizer

        self._tok = _HFTokenizer.from_file(str(path))
        self.vocab_size = self._tok.get_vocab_size(with_added_tokens=True)
        self.bos_id = bos_id if bos_id is not None else -1
        self.eos_id = eos_id if eos_id is not None else -1

    def encode(self, text: str) -> list[int]:
        # no template specials: callers add bos_id themselves, the same way for every tokenizer
        return self._tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self._tok.decode(ids, skip_special_tokens=True)


def load_tokenizer(checkpoint_dir: str | Path) -> ByteTokenizer | HFTokenizer:
    """tokenizer.json when the folder has one, else the byte tokenizer described in tokenizer_config.json."""
    folder = Path(checkpoint_dir)
    bos_id, eos_id = _special_ids_from_config(folder / "config.json")
    if (folder / "tokenizer.json").exists():
        return HFTokenizer(folder / "tokenizer.json", bos_id, eos_id)
    described = folder / "tokenizer_config.json"
    if described.exists() and json.loads(described.read_text()).get("type") == "byte":
        return ByteTokenizer()
    raise FileNotFoundError(
        f"{folder} has neither tokenizer.json nor a byte tokenizer_config.json ({{'type': 'byte'}})"
    )


def _special_ids_from_config(config_path: Path) -> tuple[int | None, int | None]:
    if not config_path.exists():
        return None, None
    hf = json.loads(config_path.read_text())
    eos = hf.get("eos_token_id")
    return hf.get("bos_token_id"), eos[0] if isinstance(eos, list) else eos
