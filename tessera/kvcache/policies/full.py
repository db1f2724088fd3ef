"""Full KV (vLLM): every page of every head stays on device and is attended each step."""
from __future__ import annotations

from tessera.kvcache.config import FullConfig
from tessera.kvcache.head_plan import HeadMode
from tessera.kvcache.policies.base import PlannedPolicy, uniform_plan
from tessera.types import ModelSpec


class FullPolicy(PlannedPolicy):
    name = "full"

    def __init__(self, model: ModelSpec, config: FullConfig = FullConfig()) -> None:
        self.config = config
        super().__init__(uniform_plan(self.name, model, config.page_tokens, HeadMode.FULL))
