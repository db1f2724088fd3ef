"""Prompt/output length samplers for synthetic workloads: fixed, uniform, or resampled from data.

Every sampler draws from the numpy Generator it is given, so a seed fixes its output.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from tessera.workload.checks import token_count
from tessera.workload.limits import TokenLimits
from tessera.workload.trace_files import read_trace_file


@runtime_checkable
class LengthSampler(Protocol):
    """Draws n (prompt_tokens, output_tokens) pairs as two int64 arrays, each value >= 1."""

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass(frozen=True, slots=True)
class FixedLengths:
    """Every request has the same prompt and output length."""

    prompt_tokens: int
    output_tokens: int

    def __post_init__(self) -> None:
        token_count("prompt_tokens", self.prompt_tokens)
        token_count("output_tokens", self.output_tokens)

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return (np.full(n, self.prompt_tokens, dtype=np.int64),
                np.full(n, self.output_tokens, dtype=np.int64))


@dataclass(frozen=True, slots=True)
class UniformLengths:
    """Prompt and output lengths drawn independently, uniformly from inclusive [lo, hi] ranges."""

    prompt_tokens: tuple[int, int]
    output_tokens: tuple[int, int]

    def __post_init__(self) -> None:
        for name in ("prompt_tokens", "output_tokens"):
            value = getattr(self, name)
            try:
                bounds = (value,) if isinstance(value, (str, bytes)) else tuple(value)
            except TypeError:  # a scalar
                bounds = (value,)
            if len(bounds) != 2:
                raise ValueError(f"{name} must be a [lo, hi] pair with 1 <= lo <= hi (got {value!r})")
            lo, hi = (token_count(f"{name}[{i}]", bound) for i, bound in enumerate(bounds))
            if lo > hi:
                raise ValueError(f"{name} must be a [lo, hi] pair with 1 <= lo <= hi (got {bounds})")
            object.__setattr__(self, name, (lo, hi))

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        prompt = rng.integers(self.prompt_tokens[0], self.prompt_tokens[1], n, endpoint=True)
        output = rng.integers(self.output_tokens[0], self.output_tokens[1], n, endpoint=True)
        return prompt.astype(np.int64), output.astype(np.int64)


@dataclass(frozen=True, slots=True)
class EmpiricalLengths:
    """Resamples whole (prompt, output) rows with replacement, keeping their correlation."""

    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    source: str = ""  # where the rows came from, for messages and printing

    def __post_init__(self) -> None:
        if len(self.prompt_tokens) == 0 or len(self.prompt_tokens) != len(self.output_tokens):
            raise ValueError(f"EmpiricalLengths needs equal, non-empty prompt and output arrays "
                             f"(got {len(self.prompt_tokens)} and {len(self.output_tokens)} rows "
                             f"from {self.source or 'arrays'}); relax the token caps")

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        rows = rng.integers(0, len(self.prompt_tokens), n)
        return self.prompt_tokens[rows], self.output_tokens[rows]


@dataclass(frozen=True, slots=True)
class ClippedLengths:
    """Another sampler's draws, cut to token caps (clip only: dropping would change n)."""

    inner: LengthSampler
    limits: TokenLimits

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        prompt, output, _ = self.limits.apply(*self.inner.sample(n, rng))
        return prompt, output


def fixed(prompt_tokens: int, output_tokens: int) -> FixedLengths:
    return FixedLengths(prompt_tokens, output_tokens)


def uniform(prompt_tokens: tuple[int, int], output_tokens: tuple[int, int],
            max_total_tokens: int | None = None) -> LengthSampler:
    sampler = UniformLengths(prompt_tokens, output_tokens)
    return _clipped(sampler, TokenLimits(max_total_tokens=max_total_tokens))


def trace_lengths(name: str | Path, format: str | None = None,
                  max_prompt_tokens: int | None = None, max_total_tokens: int | None = None,
                  over_limit: str = "clip") -> EmpiricalLengths:
    """Rows of a trace or length table (named or a path), capped by clipping or dropping rows.

    Dropping resamples only the rows within the caps (the trace's distribution conditioned on them).
    """
    limits = TokenLimits(max_prompt_tokens, max_total_tokens, over_limit)
    prompt, output = _trace_rows(str(name), format)
    prompt, output, _ = limits.apply(prompt, output)
    return EmpiricalLengths(prompt, output, source=str(name))


def sharegpt(max_prompt_tokens: int | None = None, max_total_tokens: int | None = None,
             over_limit: str = "clip") -> EmpiricalLengths:
    """ShareGPT turns (Llama-2 tokenizer, <= 8K total): input mean 2,340, output mean 439."""
    return trace_lengths("sharegpt", None, max_prompt_tokens, max_total_tokens, over_limit)


def arxiv(max_prompt_tokens: int | None = None, max_total_tokens: int | None = None,
          over_limit: str = "clip") -> EmpiricalLengths:
    """arXiv summarization (Vidur processed trace): input mean 2,588, output mean 291."""
    return trace_lengths("arxiv", None, max_prompt_tokens, max_total_tokens, over_limit)


@lru_cache(maxsize=16)
def _trace_rows(name: str, format: str | None) -> tuple[np.ndarray, np.ndarray]:
    table = read_trace_file(name, format)
    prompt, output = table.prompt_tokens.copy(), table.output_tokens.copy()
    prompt.flags.writeable = output.flags.writeable = False  # shared through the cache
    return prompt, output


def _clipped(sampler: LengthSampler, limits: TokenLimits) -> LengthSampler:
    return sampler if limits.is_unlimited else ClippedLengths(sampler, limits)
