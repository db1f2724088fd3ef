"""Parameters of the six KV-cache policies, as validated dataclasses (paper defaults: flexicache.md §3).

A bad value raises ValueError naming the field, the allowed range and the fix.
"""
from __future__ import annotations

from dataclasses import dataclass


def _validate(policy: str, obj, checks: list[tuple[str, bool, str]]) -> None:
    for name, ok, allowed in checks:
        if not ok:
            raise ValueError(f"kvpolicy.{policy}.{name}={getattr(obj, name)!r} is invalid: use {allowed}")


def _page_check(cfg) -> tuple[str, bool, str]:
    return ("page_tokens", isinstance(cfg.page_tokens, int) and cfg.page_tokens >= 1,
            "a positive token count such as 16 (FlexiCache and Quest use 16)")


def _topk_check(cfg) -> tuple[str, bool, str]:
    return ("topk_pages", isinstance(cfg.topk_pages, int) and cfg.topk_pages >= 2,
            "an integer >= 2 (the current page plus at least one other); the paper uses 64 or 128")


@dataclass(frozen=True, slots=True)
class FullConfig:
    """vLLM: every page of every head on device, every page attended."""

    page_tokens: int = 16

    def __post_init__(self) -> None:
        _validate("full", self, [_page_check(self)])


@dataclass(frozen=True, slots=True)
class QuestConfig:
    """Quest: whole cache on device, top-K pages per KV head chosen from MinMax scores every step."""

    page_tokens: int = 16
    topk_pages: int = 64

    def __post_init__(self) -> None:
        _validate("quest", self, [_page_check(self), _topk_check(self)])


@dataclass(frozen=True, slots=True)
class StreamingConfig:
    """StreamingLLM: attention-sink pages + a recent window on device, the rest dropped for good.

    Page granularity: the 4 sink tokens of StreamingLLM occupy one 16-token page; the defaults
    (16 + 1008 tokens) make a 64-page budget, the same as FlexiCache's K = 1,024 tokens.
    """

    page_tokens: int = 16
    sink_tokens: int = 16
    window_tokens: int = 1008

    def __post_init__(self) -> None:
        _validate("streaming", self, [
            _page_check(self),
            ("sink_tokens", self.sink_tokens >= 0, "a token count >= 0 (StreamingLLM uses 4 sinks)"),
            ("window_tokens", self.window_tokens >= 1, "a token count >= 1 (the current page is always kept)"),
        ])


@dataclass(frozen=True, slots=True)
class HeadSplitConfig:
    """DuoAttention-like static split: retrieval heads keep full KV, streaming heads sink + window.

    Defaults from data/duoattention-head-patterns config.json (sink_size 128, recent_size 256) and
    its SOURCE.md (GQA models keep 50% of heads as retrieval heads).
    """

    page_tokens: int = 16
    retrieval_fraction: float = 0.5
    sink_tokens: int = 128
    window_tokens: int = 256
    pattern_model: str | None = None  # folder under data/duoattention-head-patterns; None: from the model name

    def __post_init__(self) -> None:
        _validate("head_split", self, [
            _page_check(self),
            ("retrieval_fraction", 0.0 <= self.retrieval_fraction <= 1.0, "a fraction in [0, 1], e.g. 0.5"),
            ("sink_tokens", self.sink_tokens >= 0, "a token count >= 0, e.g. 128"),
            ("window_tokens", self.window_tokens >= 1, "a token count >= 1, e.g. 256"),
        ])


@dataclass(frozen=True, slots=True)
class FlexiCacheConfig:
    """FlexiCache: unstable heads Quest-like on device; stable heads top-K + tail on device, rest on host.

    unstable_heads: explicit (layer, kv_head) pairs; None takes them from `unstable_source`:
    "shipped" (the paper's profiled list in data/flexicache/, Llama-3.1-8B only) or "synthetic"
    (the fitted head model's unstable class, deterministic per model name).
    """

    page_tokens: int = 16
    topk_pages: int = 64
    rerank_interval: int = 16
    unstable_fraction: float = 0.25
    unstable_heads: tuple[tuple[int, int], ...] | None = None
    unstable_source: str = "shipped"

    def __post_init__(self) -> None:
        _validate("flexicache", self, [
            _page_check(self), _topk_check(self),
            ("rerank_interval", isinstance(self.rerank_interval, int) and self.rerank_interval >= 1,
             "an integer number of decode steps >= 1 (paper: 16)"),
            ("unstable_fraction", 0.0 <= self.unstable_fraction <= 1.0, "a fraction in [0, 1] (paper: 0.25)"),
            ("unstable_source", self.unstable_source in ("shipped", "synthetic"), "'shipped' or 'synthetic'"),
        ])


@dataclass(frozen=True, slots=True)
class AdaptiveConfig:
    """Our variant: each head gets its own rerank interval from its profiled stability.

    A head's interval is the largest of `intervals` whose expected staleness (the mean fraction of
    the head's true top-K missing from the set it attends, over one interval) stays <= max_staleness;
    heads that would need an interval below min_offload_interval stay fully on device and are
    rescored every step (Quest-like): offloading them would stall the request for a reload every few
    steps. The default 0.15 is the staleness of the median stable head under FlexiCache's R = 16 in
    the fitted head model (p ~= 0.979: 1 - (1 - p**16) / (16 (1 - p)) ~= 0.15).
    """

    page_tokens: int = 16
    topk_pages: int = 64
    max_staleness: float = 0.15
    intervals: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    min_offload_interval: int = 4
    head_stability_source: str = "synthetic"  # only "synthetic" ships; real profiles are passed as arrays

    def __post_init__(self) -> None:
        _validate("flexicache_adaptive", self, [
            _page_check(self), _topk_check(self),
            ("max_staleness", 0.0 < self.max_staleness < 1.0, "a fraction in (0, 1), e.g. 0.15"),
            ("intervals", len(self.intervals) >= 1 and 1 in self.intervals
             and all(isinstance(r, int) and r >= 1 for r in self.intervals)
             and list(self.intervals) == sorted(set(self.intervals)),
             "a strictly increasing tuple of positive step counts containing 1, e.g. (1, 2, 4, 8, 16, 32, 64)"),
            ("min_offload_interval", isinstance(self.min_offload_interval, int) and self.min_offload_interval >= 2,
             "an integer number of steps >= 2, e.g. 4"),
            ("head_stability_source", self.head_stability_source == "synthetic", "'synthetic'"),
        ])
