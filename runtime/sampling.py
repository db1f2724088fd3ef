"""Next-token choice from one row of logits: greedy, or temperature (+ top-p) with the request's generator."""
from __future__ import annotations

import torch

from tessera.runtime.sequence import SamplingParams


def sample(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator) -> int:
    """logits [vocab] float32 (any device) -> token id. The generator lives on the CPU (seeded per request)."""
    if params.temperature == 0.0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits.float().cpu() / params.temperature, dim=-1)
    if params.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        keep = torch.cumsum(sorted_probs, 0) - sorted_probs < params.top_p  # always keeps the best token
        probs = torch.zeros_like(probs).scatter_(0, order[keep], sorted_probs[keep])
    return int(torch.multinomial(probs, 1, generator=generator))
