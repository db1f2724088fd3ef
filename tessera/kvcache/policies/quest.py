"""Quest: whole cache on device; each KV head attends its top-K pages by MinMax score, rescored every step."""
from __future__ import annotations

from tessera.kvcache.config import QuestConfig
from tessera.kvcache.head_plan import HeadMode
from tessera.kvcache.policies.base import PlannedPolicy, uniform_plan
from tessera.types import ModelSpec


class QuestPolicy(PlannedPolicy):
    name = "quest"

    def __init__(self, model: ModelSpec, config: QuestConfig = QuestConfig()) -> None:
        self.config = config
        super().__init__(uniform_plan(self.name, model, config.page_tokens, HeadMode.RESIDENT_TOPK,
                                      topk_pages=config.topk_pages, keeps_minmax=True))
