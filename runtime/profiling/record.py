"""Teacher-force a token sequence through the model and record each decode step's top-K pages per
(layer, KV head), ranked by real attention mass and by Quest's MinMax bound (tessera/kvcache/traces.py).

The first `prompt_len` tokens are prefilled (chunked, causal); every later token is one decode step,
fed from the sequence itself (teacher forcing), so a step's query is the model's real query on real
text. Decode step n writes the key of position prompt_len + n - 1 and attends over prompt_len + n keys,
the traces.py convention. Per step and KV head:
- attention mass of a page = sum over the GQA group's query heads of their softmax weights on its tokens;
- MinMax score of a page = max over the group of sum_j max(q_j kmin_j, q_j kmax_j) (Quest, full pages);
both rankings force the current (last) page in, as the runtime's selection does (topk_from_scores).
The model runs layer by layer through its public pieces (embed, qkv, finish, logits) over a contiguous
per-layer cache; attention is computed explicitly so its weights can be read. teacher_force() is that
loop with a per-(step, layer) observer; record_topk() and retrieval.py's needle mass are two observers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from tessera.kvcache.topk import topk_from_scores
from tessera.kvcache.traces import TopKTrace
from tessera.runtime.model import Transformer, causal_attention


@dataclass
class RecordedSteps:
    """One sequence's decode steps: the two top-K traces and how much attention mass each set holds."""

    attention: TopKTrace  # top-K by attention mass (the ground truth)
    minmax: TopKTrace  # top-K by the MinMax upper bound (what Quest / FlexiCache select)
    mass_captured: np.ndarray  # float32 [steps, layers, kv_heads, 2]: mass fraction in the (attention, minmax) set
    nll_bits: float  # mean bits per token of the teacher-forced next tokens (a sanity check of the model)


# observe(step, layer, qg, keys, weights): qg (Hkv, group, D) the step's queries by KV group, keys
# (Hkv, S, D) the layer's cache so far, weights (Hkv, group, S) float32 softmax; query head = kv_head * group + j
AttentionObserver = Callable[[int, int, torch.Tensor, torch.Tensor, torch.Tensor], None]


@dataclass
class TeacherForced:
    """The model's predictions of tokens[prompt_len:], from the prefill and every decode step but the last."""

    nll_bits: np.ndarray  # float64 [steps]: -log2 p(token)
    greedy: np.ndarray  # int64 [steps]: the argmax token at each of those positions


@torch.inference_mode()
def teacher_force(model: Transformer, tokens: list[int], prompt_len: int, observe: AttentionObserver,
                  prefill_chunk: int = 512) -> TeacherForced:
    """Prefill tokens[:prompt_len], then feed each later token as one decode step with explicit attention,
    calling observe() for every (step, layer)."""
    steps = len(tokens) - prompt_len
    if prompt_len < 1 or steps < 1:
        raise ValueError(f"need prompt_len >= 1 and at least one decode token; got prompt_len={prompt_len}, "
                         f"{len(tokens)} tokens")
    c = model.config
    L, Hkv, D = c.num_hidden_layers, c.num_key_value_heads, c.head_dim
    group = c.num_attention_heads // Hkv
    device = model.model.embed_tokens.weight.device
    dtype = model.model.embed_tokens.weight.dtype
    total = len(tokens)
    ids = torch.tensor(tokens, dtype=torch.long, device=device)
    K_cache = torch.zeros(L, Hkv, total, D, dtype=dtype, device=device)
    V_cache = torch.zeros_like(K_cache)

    last_logits = _prefill(model, ids[:prompt_len], K_cache, V_cache, prefill_chunk)
    nll, greedy = [], []
    scale = 1.0 / math.sqrt(D)
    for t in range(steps):
        pos = prompt_len + t  # this step feeds token `pos` and attends over pos + 1 keys
        S = pos + 1
        if last_logits is not None:
            logp = F.log_softmax(last_logits.float(), -1)
            nll.append(-float(logp[ids[pos]]) / math.log(2))
            greedy.append(int(logp.argmax()))
        h = model.embed(ids[pos].view(1, 1))
        rope = model.rope(torch.tensor([pos], device=device))
        for l, layer in enumerate(model.layers):
            q, k_new, v_new = layer.qkv(h, rope)  # (1, Hq, 1, D), (1, Hkv, 1, D) x2
            K_cache[l, :, pos] = k_new[0, :, 0]
            V_cache[l, :, pos] = v_new[0, :, 0]
            keys, values = K_cache[l, :, :S], V_cache[l, :, :S]  # (Hkv, S, D)
            qg = q[0, :, 0].view(Hkv, group, D)
            weights = torch.softmax((qg @ keys.transpose(1, 2)).float() * scale, dim=-1)  # (Hkv, g, S)
            o = (weights.to(dtype) @ values).reshape(1, Hkv * group, 1, D)
            observe(t, l, qg, keys, weights)
            h = layer.finish(h, o)
        last_logits = model.logits(h)[0, -1] if pos + 1 < total else None
    return TeacherForced(np.array(nll, dtype=np.float64), np.array(greedy, dtype=np.int64))


def record_topk(model: Transformer, tokens: list[int], prompt_len: int, k: int, page_tokens: int = 16,
                prefill_chunk: int = 512) -> RecordedSteps:
    """Decode steps 1 .. len(tokens) - prompt_len of `tokens` (prompt_len >= 1); top-K = k pages."""
    steps = len(tokens) - prompt_len
    c = model.config
    shape = (max(steps, 0), c.num_hidden_layers, c.num_key_value_heads)
    attn_sets = np.full(shape + (k,), -1, dtype=np.int32)
    mm_sets = np.full_like(attn_sets, -1)
    captured = np.zeros(shape + (2,), dtype=np.float32)

    def observe(t, l, qg, keys, weights):
        P = -(-keys.shape[1] // page_tokens)
        mass = _page_sums(weights.sum(1), P, page_tokens)  # (Hkv, P)
        mm = _minmax_scores(qg, keys, P, page_tokens)  # (Hkv, P)
        attn_sets[t, l] = topk_from_scores(mass, k, P)
        mm_sets[t, l] = topk_from_scores(mm, k, P)
        captured[t, l] = _captured(mass, attn_sets[t, l], mm_sets[t, l])

    forced = teacher_force(model, tokens, prompt_len, observe, prefill_chunk)
    attention = TopKTrace(attn_sets, prompt_len, page_tokens)
    minmax = TopKTrace(mm_sets, prompt_len, page_tokens)
    nll = float(forced.nll_bits.mean()) if len(forced.nll_bits) else math.nan
    return RecordedSteps(attention, minmax, captured, nll)


def _prefill(model: Transformer, prompt: torch.Tensor, K_cache, V_cache, chunk: int) -> torch.Tensor:
    """Causal prefill in chunks, filling the caches; returns the logits that predict the next token."""
    h_last = None
    for start in range(0, len(prompt), chunk):
        end = min(start + chunk, len(prompt))
        h = model.embed(prompt[start:end][None])
        rope = model.rope(torch.arange(start, end, device=prompt.device))
        for l, layer in enumerate(model.layers):
            q, k, v = layer.qkv(h, rope)
            K_cache[l, :, start:end] = k[0]
            V_cache[l, :, start:end] = v[0]
            o = causal_attention(q, K_cache[l, :, :end][None], V_cache[l, :, :end][None])
            h = layer.finish(h, o)
        h_last = h[:, -1:]
    return model.logits(h_last)[0, -1]


def _page_sums(per_token: torch.Tensor, num_pages: int, page_tokens: int) -> np.ndarray:
    """(H, S) per-token values -> (H, num_pages) sums over each page's tokens (last page may be partial)."""
    H, S = per_token.shape
    padded = F.pad(per_token, (0, num_pages * page_tokens - S))
    return padded.view(H, num_pages, page_tokens).sum(-1).cpu().numpy()


def _minmax_scores(qg: torch.Tensor, keys: torch.Tensor, num_pages: int, page_tokens: int) -> np.ndarray:
    """Quest's bound of every full page; the current page gets 0 (topk_from_scores forces it in anyway)."""
    Hkv, S, D = keys.shape
    full = S // page_tokens
    scores = np.zeros((Hkv, num_pages), dtype=np.float64)
    if full:
        pages = keys[:, :full * page_tokens].float().view(Hkv, full, page_tokens, D)
        kmin, kmax = pages.amin(2), pages.amax(2)  # (Hkv, full, D)
        q = qg.float()[:, :, None, :]  # (Hkv, g, 1, D)
        bound = torch.maximum(q * kmin[:, None], q * kmax[:, None]).sum(-1)  # (Hkv, g, full)
        scores[:, :full] = bound.amax(1).cpu().numpy()
    return scores


def _captured(mass: np.ndarray, attn_set: np.ndarray, mm_set: np.ndarray) -> np.ndarray:
    """(H, 2): fraction of each head's group attention mass inside its attention / MinMax top-K."""
    total = mass.sum(-1)
    out = np.empty((mass.shape[0], 2), dtype=np.float32)
    for j, sets in enumerate((attn_set, mm_set)):
        picked = np.where(sets >= 0, np.take_along_axis(mass, np.maximum(sets, 0), -1), 0.0)
        out[:, j] = picked.sum(-1) / total
    return out
