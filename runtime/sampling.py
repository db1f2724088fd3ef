"""Next-token choice from rows of logits: greedy, or temperature (+ top-p) with the request's generator.

Generators live on the CPU (seeded per request) and the random draw is made on the CPU in float32, so a
seed gives the same tokens from the same logits on any device. ``sample_batch`` is what the engine calls:
it moves a step's logits to the host once (greedy rows as argmax ids, sampled rows as fp32 rows) instead
of one device->host sync per request. ``next_tokens`` adds forced decoding on top: rows whose next output
token is forced take it (without a random draw), the rest are sampled, and rows asking for log-probs get
the log-softmax of the token taken (teacher-forced scoring).
"""
from __future__ import annotations

import torch

from tessera.runtime.sequence import FREE, SamplingParams


def _draw(probs_logits: torch.Tensor, params: SamplingParams, generator: torch.Generator) -> int:
    """logits [vocab] float32 ON THE CPU -> a token drawn with the CPU generator."""
    probs = torch.softmax(probs_logits / params.temperature, dim=-1)
    if params.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        keep = torch.cumsum(sorted_probs, 0) - sorted_probs < params.top_p  # always keeps the best token
        probs = torch.zeros_like(probs).scatter_(0, order[keep], sorted_probs[keep])
    return int(torch.multinomial(probs, 1, generator=generator))


def sample(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator) -> int:
    """logits [vocab] float32 (any device) -> token id. The generator lives on the CPU (seeded per request)."""
    if params.temperature == 0.0:
        return int(torch.argmax(logits))
    return _draw(logits.float().cpu(), params, generator)


def sample_batch(logits: torch.Tensor, params: list[SamplingParams],
                 generators: list[torch.Generator]) -> list[int]:
    """logits [S, vocab] (any device) -> S token ids, with at most two device->host copies per call.

    Row i uses params[i] and generators[i] exactly as ``sample(logits[i], ...)`` would.
    """
    n = logits.shape[0]
    if n == 0:
        return []
    greedy = [p.temperature == 0.0 for p in params]
    out: list[int] = [0] * n
    if any(greedy):
        ids = torch.argmax(logits, dim=-1).tolist()  # one sync for every greedy row
        for i in range(n):
            if greedy[i]:
                out[i] = int(ids[i])
    hot = [i for i in range(n) if not greedy[i]]
    if hot:
        rows = logits if len(hot) == n else logits[torch.tensor(hot, device=logits.device)]
        rows = rows.float().cpu()  # one copy for every sampled row
        for j, i in enumerate(hot):
            out[i] = _draw(rows[j], params[i], generators[i])
    return out


def next_tokens(logits: torch.Tensor, params: list[SamplingParams], generators: list[torch.Generator],
                steps: list[int]) -> tuple[list[int], list[float | None]]:
    """logits [S, vocab] -> (S token ids, S log-probs or None); steps[i] = output tokens row i already has.

    Forced rows (params[i].forced_at(steps[i]) != FREE) take the forced id and draw nothing from their
    generator; the others are sampled by ``sample_batch``. Log-probs are computed (float32) only for rows
    with params[i].logprobs, in one device->host copy.
    """
    forced = [p.forced_at(t) for p, t in zip(params, steps)]
    free = [i for i, f in enumerate(forced) if f == FREE]
    tokens = list(forced)
    if free:
        rows = logits if len(free) == len(forced) else logits[torch.tensor(free, device=logits.device)]
        for i, token in zip(free, sample_batch(rows, [params[i] for i in free], [generators[i] for i in free])):
            tokens[i] = token
    logprobs: list[float | None] = [None] * len(tokens)
    scored = [i for i, p in enumerate(params) if p.logprobs]
    if scored:
        index = torch.tensor(scored, device=logits.device)
        taken = torch.tensor([tokens[i] for i in scored], device=logits.device)
        lp = torch.log_softmax(logits[index].float(), dim=-1).gather(1, taken[:, None])[:, 0].tolist()
        for i, v in zip(scored, lp):
            logprobs[i] = float(v)
    return tokens, logprobs
