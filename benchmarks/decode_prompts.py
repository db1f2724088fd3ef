"""Benchmark prompts from real text: the Python standard library's source, tokenized by the model's
tokenizer and cut into equal-length windows (one per request), the same for every system compared.
"""
from __future__ import annotations

import sysconfig
from pathlib import Path

import torch


def stdlib_sources() -> list[Path]:
    """The standard library's top-level modules, in a fixed order."""
    return sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))


def text_prompts(tokenizer, num_prompts: int, length: int) -> list[list[int]]:
    """num_prompts disjoint windows of `length` tokens of the stdlib source (no special tokens).

    A batch of B at some length is the first B windows, so smaller batches reuse larger batches' prompts.
    """
    need = num_prompts * length
    ids: list[int] = []
    for path in stdlib_sources():
        ids.extend(tokenizer.encode(path.read_text(encoding="utf-8", errors="replace"), add_special_tokens=False))
        if len(ids) >= need:
            return [ids[i * length:(i + 1) * length] for i in range(num_prompts)]
    raise ValueError(f"the stdlib source gives {len(ids)} tokens, {need} are needed")


def random_prompts(vocab_size: int, num_prompts: int, length: int, seed: int = 0) -> list[list[int]]:
    """Seeded random ids: the fallback for a checkpoint without a tokenizer."""
    gen = torch.Generator().manual_seed(seed)
    return [torch.randint(0, vocab_size, (length,), generator=gen).tolist() for _ in range(num_prompts)]
