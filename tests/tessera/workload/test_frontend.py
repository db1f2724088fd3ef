"""through_frontend: each request reaches the engine frontend_s later (one after another when serial), nothing else
about it changes; as_client_sees reports the client's send times."""
import pandas as pd
import pytest

from tessera.cost.engine_profile import EngineProfile
from tessera.types import Request
from tessera.workload.frontend import as_client_sees, through_frontend

REQUESTS = [Request(i, 0.05 * i, 200 + 37 * i, 20 + 3 * i) for i in range(12)]


def test_the_engine_sees_every_request_later_and_nothing_else_changes():
    shifted = through_frontend(REQUESTS, 0.02)
    assert [r.arrival_s for r in shifted] == pytest.approx([r.arrival_s + 0.02 for r in REQUESTS])
    assert [(r.prompt_tokens, r.output_tokens) for r in shifted] == [(r.prompt_tokens, r.output_tokens)
                                                                     for r in REQUESTS]
    assert through_frontend(REQUESTS, 0.0) == REQUESTS


def test_a_serial_frontend_spreads_a_burst_and_queues_behind_busy_periods():
    burst = [Request(i, 0.0, 100, 10) for i in range(4)] + [Request(4, 1.0, 100, 10), Request(5, 0.001, 100, 10)]
    seen = through_frontend(burst, 0.01, serial=True)
    # the burst (and request 5, sent while the frontend is busy) in send order, 10 ms each; request 4 finds it idle
    assert [r.arrival_s for r in seen] == pytest.approx([0.01, 0.02, 0.03, 0.04, 1.01, 0.05])
    assert [r.request_id for r in seen] == [r.request_id for r in burst]


def test_the_client_sees_its_own_send_times():
    frame = pd.DataFrame({"request_id": [0, 1, 2], "arrival_s": [0.01, 0.02, 0.03], "finish_s": [1.0, 1.1, 1.2]})
    sent = [Request(i, 0.0, 10, 5) for i in range(3)]
    client = as_client_sees(frame, sent)
    assert client["arrival_s"].tolist() == [0.0, 0.0, 0.0] and client["finish_s"].tolist() == [1.0, 1.1, 1.2]
    with pytest.raises(ValueError, match="request_id repeats among the sent requests"):
        as_client_sees(frame, sent + [Request(0, 1.0, 10, 5)])
    with pytest.raises(ValueError, match="request_id 2 of the results was never sent"):
        as_client_sees(frame, sent[:2])


def test_the_breakdown_gains_the_frontends_time_and_still_adds_up_to_e2e():
    """A simulator frame's breakdown covers the engine's time; the frontend's share gets a column of its own (it was
    left out: execution + preemption + scheduling delay fell short of E2E by frontend_s on every request)."""
    frame = pd.DataFrame({"request_id": [0, 1], "arrival_s": [0.05, 0.30], "finish_s": [1.0, 2.0],
                          "execution_s": [0.6, 1.2], "preemption_s": [0.0, 0.1]})
    frame["scheduling_delay_s"] = frame["finish_s"] - frame["arrival_s"] - frame["execution_s"] - frame["preemption_s"]
    client = as_client_sees(frame, [Request(0, 0.0, 10, 5), Request(1, 0.25, 10, 5)])
    assert client["frontend_s"].tolist() == pytest.approx([0.05, 0.05])
    parts = client[["execution_s", "preemption_s", "scheduling_delay_s", "frontend_s"]].sum(axis=1)
    assert parts.tolist() == pytest.approx((client["finish_s"] - client["arrival_s"]).tolist())
    assert "frontend_s" not in as_client_sees(frame.drop(columns="scheduling_delay_s"), [Request(0, 0.0, 10, 5),
                                                                                         Request(1, 0.25, 10, 5)])
    from tessera.results import summarize
    from tessera.results.schema import empty_frame

    full = pd.concat([empty_frame(), client], ignore_index=True)
    full["status"], full["prompt_tokens"], full["output_tokens"] = "finished", 10, 5
    full["first_token_s"], full["start_s"] = full["finish_s"] - 0.5, full["arrival_s"] + 0.1
    assert summarize(full)["breakdown_s"]["frontend"]["mean"] == pytest.approx(0.05)


def test_a_serial_frontend_without_a_delay_is_refused():
    with pytest.raises(ValueError, match="engine_profile.frontend_serial=true has no effect with frontend_s=0"):
        EngineProfile(name="x", frontend_serial=True)
