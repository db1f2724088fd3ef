"""Held-out text as a checkpoint's own token ids: the profilers' input (runtime/train/corpus.py's split).

A byte checkpoint reads the split's bytes as before; a BPE checkpoint reads the same text through its
tokenizer (tokenizer.json), with the special tokens its encode() puts first (BOS for Llama, none for SmolLM2).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class HeldoutTokens:
    """The held-out split as one token array (files joined by corpus.FILE_SEPARATOR) and the checkpoint's
    start-of-sequence specials."""

    ids: np.ndarray  # int64 [n], no specials
    prefix: list[int]  # what encode(text) puts before the text's tokens: [<bos>] or []
    tokenizer: object | None  # the checkpoint's tokenizer (None: a bare checkpoint read as bytes)

    def window(self, rng: np.random.Generator, length: int) -> list[int]:
        """prefix + a uniformly placed run of held-out tokens, `length` tokens in all."""
        body = length - len(self.prefix)
        start = int(rng.integers(0, len(self.ids) - body))
        return self.prefix + self.ids[start:start + body].tolist()


def special_prefix(tokenizer) -> list[int]:
    """The special tokens tokenizer.encode(text) adds before the text (its BOS convention)."""
    full, plain = tokenizer.encode("a"), tokenizer.encode("a", add_special_tokens=False)
    if full[len(full) - len(plain):] != plain:
        raise ValueError(f"encode('a') = {full} does not end with the plain encoding {plain}")
    return full[:len(full) - len(plain)]


def heldout_tokens(model_dir: str | Path, bos_id: int | None = None) -> HeldoutTokens:
    """The held-out split in the checkpoint's tokens. A folder without tokenizer files (a bare test
    checkpoint) is read as bytes with config.json's BOS first, as the byte model was trained."""
    from tessera.runtime.tokenizer import load_tokenizer
    from tessera.runtime.train.corpus import load_split

    data = load_split("heldout").data
    try:
        tokenizer = load_tokenizer(model_dir)
    except FileNotFoundError:
        return HeldoutTokens(data.astype(np.int64), [] if bos_id is None else [bos_id], None)
    ids = tokenizer.encode(data.tobytes().decode("utf-8"), add_special_tokens=False)
    return HeldoutTokens(np.asarray(ids, dtype=np.int64), special_prefix(tokenizer), tokenizer)
