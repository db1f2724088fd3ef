"""Synthetic head behaviour: how each (layer, KV head)'s top-K page set drifts from decode step to step.

Model (one stability parameter per head, its per-step keep probability p): from one step to the
next every page of the set except the current one stays with probability p, else it is replaced by
a page drawn from the pages outside the set; a replacement is drawn from the `recent_window_pages`
pages just before the current one with probability `recent_share` (decode-time attention favours
recent tokens: StreamingLLM's window, DuoAttention's streaming heads), uniformly otherwise. The
current page is always in the set (FlexiCache's sentinel score). Over d steps a page survives with
probability p**d and refills are chance draws, so RCO(d) ~= p**d: the random correction of
flexicache.md §1.1 removes exactly the refills' chance overlap.

Population (fitted to the paper, data/flexicache/SOURCE.md): per-step churn c = 1 - p is
log-normal per head, c = exp(class mean + head_spread * z_head + task_spread * z_(request, head)
+ request_spread * z_request), with the unstable class holding `unstable_fraction` of the heads.
"""
from __future__ import annotations

import json
import math
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tessera.kvcache.head_lists import heads_mask
from tessera.kvcache.traces import TopKTrace


@dataclass(frozen=True, slots=True)
class HeadModelParams:
    unstable_fraction: float = 0.25
    stable_log_churn_mean: float = math.log(0.02)
    unstable_log_churn_mean: float = math.log(0.5)
    head_spread: float = 0.5  # sd of log churn across heads of a class
    task_spread: float = 0.5  # sd of a request's (task's) deviation per head
    request_spread: float = 0.2  # sd of a request-wide shift of all heads
    recent_share: float = 0.3
    recent_window_pages: int = 16  # 256 tokens, DuoAttention's recent_size
    min_churn: float = 1e-4
    max_churn: float = 0.95

    def __post_init__(self) -> None:
        checks = [
            ("unstable_fraction", 0.0 <= self.unstable_fraction <= 1.0, "a fraction in [0, 1]"),
            ("head_spread", self.head_spread >= 0, "a standard deviation >= 0"),
            ("task_spread", self.task_spread >= 0, "a standard deviation >= 0"),
            ("request_spread", self.request_spread >= 0, "a standard deviation >= 0"),
            ("recent_share", 0.0 <= self.recent_share <= 1.0, "a fraction in [0, 1]"),
            ("recent_window_pages", self.recent_window_pages >= 1, "a page count >= 1"),
            ("min_churn", 0.0 < self.min_churn < self.max_churn < 1.0, "0 < min_churn < max_churn < 1"),
        ]
        for name, ok, allowed in checks:
            if not ok:
                raise ValueError(f"head_model.{name}={getattr(self, name)!r} is invalid: use {allowed}")

    def save(self, path: Path, **extra) -> None:
        Path(path).write_text(json.dumps({"params": asdict(self), **extra}, indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> "HeadModelParams":
        return cls(**json.loads(Path(path).read_text())["params"])


def default_params() -> HeadModelParams:
    """The parameters fitted to the paper's figures (data/flexicache/head_model_fit.json)."""
    from tessera.paths import data_path

    return HeadModelParams.load(data_path("flexicache", "head_model_fit.json"))


def model_seed(name: str) -> int:
    """A seed that depends only on the model name (stable across runs and Python versions)."""
    return zlib.crc32(name.encode())


class HeadModel:
    """A model's head population; hands out each request's behaviour (a TopKSource)."""

    def __init__(self, params: HeadModelParams, num_layers: int, num_kv_heads: int,
                 unstable_heads=None, seed: int = 0) -> None:
        self.params = params
        self.shape = (num_layers, num_kv_heads)
        self.seed = seed
        rng = np.random.default_rng([seed, 0])
        if unstable_heads is None:
            total = num_layers * num_kv_heads
            flat = np.zeros(total, dtype=bool)
            flat[rng.permutation(total)[: int(round(params.unstable_fraction * total))]] = True
            self.unstable = flat.reshape(self.shape)
        else:
            self.unstable = heads_mask(unstable_heads, self.shape)
        mean = np.where(self.unstable, params.unstable_log_churn_mean, params.stable_log_churn_mean)
        self.base_log_churn = mean + params.head_spread * rng.standard_normal(self.shape)

    def keep_prob(self, request_id: int) -> np.ndarray:
        """[layers, kv_heads] per-step keep probability of each head for this request (its task)."""
        p = self.params
        rng = np.random.default_rng([self.seed, 1, request_id])
        shift = p.request_spread * rng.standard_normal()
        log_churn = self.base_log_churn + p.task_spread * rng.standard_normal(self.shape) + shift
        return 1.0 - np.minimum(np.maximum(np.exp(log_churn), p.min_churn), p.max_churn)  # np.clip, cheaper

    def typical_keep_prob(self) -> np.ndarray:
        """Keep probability of each head with no task or request deviation."""
        p = self.params
        return 1.0 - np.clip(np.exp(self.base_log_churn), p.min_churn, p.max_churn)

    def behaviour(self, request_id: int) -> "HeadBehaviour":
        return HeadBehaviour(self.keep_prob(request_id), self.params,
                             np.random.default_rng([self.seed, 2, request_id]))

    def simulate_trace(self, request_id: int, prompt_len: int, steps: int, k: int,
                       page_tokens: int = 16) -> TopKTrace:
        """Per-step top-K sets of every head for `steps` decode steps (the trace format of traces.py)."""
        return self.behaviour(request_id).trace(prompt_len, steps, k, page_tokens)


class HeadBehaviour:
    """One request's head behaviour: a TopKSource that evolves each head's set between rankings."""

    def __init__(self, keep_prob: np.ndarray, params: HeadModelParams, rng: np.random.Generator) -> None:
        self.keep_prob = keep_prob
        self.params = params
        self.rng = rng

    def select(self, decode_step, num_pages, layers, heads, prev, steps_since, k) -> np.ndarray:
        m, cur = len(layers), num_pages - 1  # pages [0, cur) compete for k - 1 slots
        if cur < k - 1:
            raise ValueError(f"head model needs more than k={k} pages to select from, got {num_pages}")
        rng = self.rng
        out = np.full((m, k), cur, dtype=np.int32)
        taken = np.zeros((m, cur + 1), dtype=bool)  # column cur absorbs pads
        row_ix = np.arange(m)[:, None]
        kept = np.zeros(m, dtype=np.int64)
        if prev is not None:
            prev = np.asarray(prev)
            survive = self.keep_prob[layers, heads] ** np.maximum(np.asarray(steps_since), 1)
            retain = (prev >= 0) & (prev < cur) & (rng.random(prev.shape) < survive[:, None])
            # the old current page became an ordinary page: at most one too many can survive
            excess = np.flatnonzero(retain.sum(1) > k - 1)
            if len(excess):
                prio = np.where(retain[excess], rng.random((len(excess), prev.shape[1])), np.inf)
                retain[excess, prio.argmin(1)] = False
            survivors = np.sort(np.where(retain, prev, np.iinfo(np.int32).max), axis=1)[:, : k - 1]
            kept = retain.sum(1)
            filled = np.arange(k - 1)[None, :] < kept[:, None]
            out[:, 1:] = np.where(filled, survivors, cur)
            taken[row_ix, np.where(filled, survivors, cur)] = True
        rows, pages = self._draw(taken, (k - 1) - kept)
        order = np.argsort(rows, kind="stable")
        rows, pages = rows[order], pages[order]
        rank_in_row = np.arange(len(rows)) - np.searchsorted(rows, rows)
        out[rows, 1 + kept[rows] + rank_in_row] = pages
        return out

    def _draw(self, taken: np.ndarray, need: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """need[i] new pages for row i from pages [0, pool) not yet taken (recency-biased); (rows, pages).

        Each new page is a recent one with probability recent_share: those are drawn without
        replacement from the row's free pages of the recent window (any shortfall goes uniform);
        the rest uniformly from the free pages (rejection; collisions are rare when K << pages).
        """
        rng, m, pool = self.rng, taken.shape[0], taken.shape[1] - 1
        window = min(self.params.recent_window_pages, pool)
        got_rows, got_pages = [], []
        want_recent = rng.binomial(need, self.params.recent_share)
        if want_recent.any():
            free = ~taken[:, pool - window: pool]
            keys = np.where(free, rng.random((m, window)), np.inf)
            order = np.argsort(keys, axis=1)
            take = np.minimum(want_recent, free.sum(1))
            pick = np.arange(window)[None, :] < take[:, None]
            rows = np.nonzero(pick)[0]
            pages = pool - window + order[pick]
            taken[rows, pages] = True
            got_rows.append(rows), got_pages.append(pages)
            need = need - take
        else:
            need = need.copy()
        for _ in range(16):
            if not need.any():
                break
            rows = np.repeat(np.arange(m), need)
            pages = rng.integers(0, pool, len(rows))
            _, first = np.unique(rows * pool + pages, return_index=True)
            accept = np.zeros(len(rows), dtype=bool)
            accept[first] = True
            accept &= ~taken[rows, pages]
            taken[rows[accept], pages[accept]] = True
            got_rows.append(rows[accept]), got_pages.append(pages[accept])
            need -= np.bincount(rows[accept], minlength=m)
        for i in np.flatnonzero(need):  # crowded rows: draw the rest without replacement
            extra = rng.choice(np.flatnonzero(~taken[i, :pool]), need[i], replace=False)
            taken[i, extra] = True
            got_rows.append(np.full(len(extra), i)), got_pages.append(extra)
        if not got_rows:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        return np.concatenate(got_rows), np.concatenate(got_pages)

    def trace(self, prompt_len: int, steps: int, k: int, page_tokens: int = 16) -> TopKTrace:
        layers, heads = (a.ravel() for a in np.indices(self.keep_prob.shape))
        out = np.full((steps,) + self.keep_prob.shape + (k,), -1, dtype=np.int32)
        num_pages = -(-(prompt_len + np.arange(1, steps + 1)) // page_tokens)
        prev = None
        for t, n in enumerate(num_pages):
            if n <= k:
                out[t, ..., :n] = np.arange(n)
                continue
            ones = np.ones(len(layers), dtype=np.int64)
            sets = self.select(t + 1, int(n), layers, heads, prev, ones, k)
            out[t] = sets.reshape(out.shape[1:])
            prev = sets
        return TopKTrace(topk=out, prompt_len=prompt_len, page_tokens=page_tokens, num_pages=num_pages)
