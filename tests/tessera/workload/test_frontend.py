"""through_frontend: each request reaches the engine frontend_s later, nothing else about it changes."""
import pytest

from tessera.types import Request
from tessera.workload.frontend import through_frontend

REQUESTS = [Request(i, 0.05 * i, 200 + 37 * i, 20 + 3 * i) for i in range(12)]


def test_the_engine_sees_every_request_later_and_nothing_else_changes():
    shifted = through_frontend(REQUESTS, 0.02)
    assert [r.arrival_s for r in shifted] == pytest.approx([r.arrival_s + 0.02 for r in REQUESTS])
    assert [(r.prompt_tokens, r.output_tokens) for r in shifted] == [(r.prompt_tokens, r.output_tokens)
                                                                     for r in REQUESTS]
    assert through_frontend(REQUESTS, 0.0) == REQUESTS
