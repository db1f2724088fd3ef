"""llama.cpp's BPE pre-tokenizers, chosen by tokenizer.ggml.pre, as regex lists for `tokenizers` Splits.

Regexes and name groups follow llama.cpp's src/llama-vocab.cpp; an unknown pre type is refused by name.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Regex, pre_tokenizers

from tessera.runtime.convert.errors import ConversionError

log = logging.getLogger(__name__)

GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
LLAMA3 = (r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
          r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


@dataclass(frozen=True)
class PreTokenizer:
    """One llama.cpp LLAMA_VOCAB_PRE_TYPE_*: regexes applied in turn, each splitting every piece
    the previous one left (matches and the text between them both kept), plus its vocab flags."""

    group: str
    regexes: tuple[str, ...]
    ignore_merges: bool = False  # a piece that is itself a vocab token is taken whole (Llama 3)
    add_bos: bool = False  # llama.cpp's default when the file has no tokenizer.ggml.add_bos_token
    clean_spaces: bool = True

    def build(self) -> pre_tokenizers.PreTokenizer:
        splits = [pre_tokenizers.Split(Regex(r), behavior="isolated") for r in self.regexes]
        byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
        return pre_tokenizers.Sequence([*splits, byte_level])


DEFAULT = PreTokenizer("default", (r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"))
GROUPS = {
    "default": DEFAULT,
    "gpt2": PreTokenizer("gpt2", (GPT2,)),
    "smollm": PreTokenizer("smollm", (r"\p{N}", GPT2)),  # each digit its own piece, then GPT-2's regex
    "llama3": PreTokenizer("llama3", (LLAMA3,), ignore_merges=True, add_bos=True),
    "dbrx": PreTokenizer("dbrx", (LLAMA3,)),
    "falcon": PreTokenizer("falcon", (r"[\p{P}\$\+<=>\^~\|`]+", GPT2, r"[0-9][0-9][0-9]")),
}
PRE_TYPES = {
    "default": "default",
    **dict.fromkeys(["gpt-2", "gpt2", "phi-2", "mpt", "olmo", "jais", "exaone4"], "gpt2"),
    **dict.fromkeys(["smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b"], "smollm"),
    **dict.fromkeys(["llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2"],
                    "llama3"),
    **dict.fromkeys(["dbrx", "smaug-bpe"], "dbrx"),
    "falcon": "falcon",
}
NO_CLEAN_SPACES = {"smollm", "command-r"}  # llama.cpp sets clean_spaces=false for these names


def pre_tokenizer_for(pre: str | None, path: Path) -> PreTokenizer:
    """The pre-tokenizer llama.cpp uses for `tokenizer.ggml.pre` (missing: 'default', with a warning)."""
    if not pre:
        log.warning("%s: no tokenizer.ggml.pre; using llama.cpp's 'default' pre-tokenizer as llama.cpp does "
                    "(it warns that generation quality will be degraded)", path)
        return DEFAULT
    if pre not in PRE_TYPES:
        raise ConversionError(
            f"{path}: tokenizer.ggml.pre={pre!r} is not a pre-tokenizer tessera-convert knows; supported: "
            f"{sorted(PRE_TYPES)}"
        )
    spec = GROUPS[PRE_TYPES[pre]]
    if pre in NO_CLEAN_SPACES:
        spec = PreTokenizer(spec.group, spec.regexes, spec.ignore_merges, spec.add_bos, clean_spaces=False)
    return spec
