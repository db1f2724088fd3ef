"""Policy configs: bad values name the field, the range and the fix; make_policy checks names."""
import pytest

from tessera.kvcache import make_policy
from tessera.kvcache.config import AdaptiveConfig, FlexiCacheConfig, HeadSplitConfig, QuestConfig, StreamingConfig
from tessera.models import model


@pytest.mark.parametrize("cls, field, value", [
    (QuestConfig, "topk_pages", 1), (QuestConfig, "page_tokens", 0),
    (StreamingConfig, "window_tokens", 0), (HeadSplitConfig, "retrieval_fraction", 1.5),
    (FlexiCacheConfig, "rerank_interval", 0), (FlexiCacheConfig, "unstable_fraction", -0.1),
    (FlexiCacheConfig, "unstable_source", "magic"), (AdaptiveConfig, "max_staleness", 1.0),
    (AdaptiveConfig, "intervals", (2, 4)), (AdaptiveConfig, "intervals", (1, 4, 2)),
])
def test_bad_value_names_field_and_allowed_range(cls, field, value):
    with pytest.raises(ValueError, match=rf"\.{field}=.*is invalid: use "):
        cls(**{field: value})


def test_make_policy_rejects_unknown_names_and_parameters():
    llama = model("Llama-3.1-8B")
    with pytest.raises(ValueError, match="use one of full, quest"):
        make_policy("h2o", llama)
    with pytest.raises(ValueError, match="has no parameter budget"):
        make_policy("quest", llama, budget=3)


def test_shipped_unstable_list_is_llama_only():
    with pytest.raises(KeyError, match="unstable_source='synthetic'"):
        make_policy("flexicache", model("Mistral-7B-v0.2"))
    plan = make_policy("flexicache", model("Mistral-7B-v0.2"), unstable_source="synthetic").plan
    assert plan.count(1) == 64 and plan.count(3) == 192
