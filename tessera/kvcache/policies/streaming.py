"""StreamingLLM: attention-sink pages + a recent window per head; pages leaving the window are dropped."""
from __future__ import annotations

from tessera.kvcache.config import StreamingConfig
from tessera.kvcache.head_plan import HeadMode
from tessera.kvcache.policies.base import PlannedPolicy, pages_for, uniform_plan
from tessera.types import ModelSpec


class StreamingPolicy(PlannedPolicy):
    name = "streaming"

    def __init__(self, model: ModelSpec, config: StreamingConfig = StreamingConfig()) -> None:
        self.config = config
        p = config.page_tokens
        super().__init__(uniform_plan(self.name, model, p, HeadMode.WINDOW,
                                      sink_pages=pages_for(config.sink_tokens, p),
                                      window_pages=pages_for(config.window_tokens, p)))
