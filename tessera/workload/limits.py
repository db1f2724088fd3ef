"""Token-count limits applied to traces and resampled lengths: clip long requests or drop them.

Shared by trace replay and the empirical length samplers so both read the same options the same way.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tessera.workload.checks import MAX_TOKENS, whole_number

OVER_LIMIT_MODES = ("clip", "drop")


@dataclass(frozen=True, slots=True)
class TokenLimits:
    """Caps on prompt and prompt+output tokens; over_limit says what happens to a longer request.

    clip: the prompt is cut to max_prompt_tokens (and to max_total_tokens - 1, so one output token
    remains), then the output is cut so prompt + output <= max_total_tokens.
    drop: a request over either cap is removed.
    """

    max_prompt_tokens: int | None = None
    max_total_tokens: int | None = None
    over_limit: str = "clip"

    def __post_init__(self) -> None:
        if self.over_limit not in OVER_LIMIT_MODES:
            raise ValueError(f"over_limit must be one of {', '.join(OVER_LIMIT_MODES)} "
                             f"(got {self.over_limit!r})")
        for name, minimum in (("max_prompt_tokens", 1), ("max_total_tokens", 2)):
            value = getattr(self, name)
            if value is not None:  # None: no cap
                whole_number(name, value, minimum, 2 * MAX_TOKENS)

    @property
    def is_unlimited(self) -> bool:
        return self.max_prompt_tokens is None and self.max_total_tokens is None

    def apply(self, prompt: np.ndarray, output: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(prompt, output, kept) where kept marks the input rows that survive."""
        if self.over_limit == "drop":
            kept = np.ones(len(prompt), dtype=bool)
            if self.max_prompt_tokens is not None:
                kept &= prompt <= self.max_prompt_tokens
            if self.max_total_tokens is not None:
                kept &= prompt + output <= self.max_total_tokens
            return prompt[kept], output[kept], kept
        if self.max_prompt_tokens is not None:
            prompt = np.minimum(prompt, self.max_prompt_tokens)
        if self.max_total_tokens is not None:
            prompt = np.minimum(prompt, self.max_total_tokens - 1)
            output = np.minimum(output, self.max_total_tokens - prompt)
        return prompt, output, np.ones(len(prompt), dtype=bool)
