"""The six KV-cache policies, each a HeadPlan builder: full, quest, streaming, head_split, flexicache,
flexicache_adaptive; make_policy builds one by name from keyword parameters."""
from __future__ import annotations

from tessera.kvcache.config import (AdaptiveConfig, FlexiCacheConfig, FullConfig, HeadSplitConfig, QuestConfig,
                                    StreamingConfig)
from tessera.kvcache.policies.adaptive import FlexiCacheAdaptivePolicy
from tessera.kvcache.policies.base import KVCachePolicy, PlannedPolicy
from tessera.kvcache.policies.flexicache import FlexiCachePolicy
from tessera.kvcache.policies.full import FullPolicy
from tessera.kvcache.policies.head_split import HeadSplitPolicy
from tessera.kvcache.policies.quest import QuestPolicy
from tessera.kvcache.policies.streaming import StreamingPolicy
from tessera.types import ModelSpec

POLICIES = {
    "full": (FullPolicy, FullConfig),
    "quest": (QuestPolicy, QuestConfig),
    "streaming": (StreamingPolicy, StreamingConfig),
    "head_split": (HeadSplitPolicy, HeadSplitConfig),
    "flexicache": (FlexiCachePolicy, FlexiCacheConfig),
    "flexicache_adaptive": (FlexiCacheAdaptivePolicy, AdaptiveConfig),
}


def make_policy(name: str, model: ModelSpec, **params) -> PlannedPolicy:
    """Policy `name` for `model`, its config built from `params` (validated)."""
    if name not in POLICIES:
        raise ValueError(f"kvpolicy={name!r} is unknown: use one of {', '.join(POLICIES)}")
    policy_cls, config_cls = POLICIES[name]
    fields = set(config_cls.__dataclass_fields__)
    unknown = set(params) - fields
    if unknown:
        raise ValueError(f"kvpolicy.{name} has no parameter {', '.join(sorted(unknown))}; "
                         f"its parameters are {', '.join(sorted(fields))}")
    return policy_cls(model, config_cls(**params))


__all__ = ["POLICIES", "KVCachePolicy", "PlannedPolicy", "make_policy", "FullPolicy", "QuestPolicy",
           "StreamingPolicy", "HeadSplitPolicy", "FlexiCachePolicy", "FlexiCacheAdaptivePolicy"]
