"""engine_profile.frontend_s on the simulator backend: results are reported as the client sees them (TTFT and E2E
include the delay, TPOT does not), and tessera_default with a frontend delay is not dropped as the neutral profile."""
import numpy as np
import pytest

from tessera.experiments.backends.sim import run_sim
from tessera.experiments.resolve import resolve
from tessera.results.schema import add_latency_columns
from tessera.types import Request

REQUESTS = [Request(i, 0.05 * i, 200 + 37 * i, 20 + 3 * i) for i in range(12)]


@pytest.mark.parametrize("profile", ["vllm_v0_multistep", "tessera_default"])
def test_ttft_and_e2e_grow_by_the_frontend_delay_and_tpot_does_not(composed, profile):
    def latencies(frontend_s):
        spec = resolve(composed([f"engine_profile={profile}", f"engine_profile.frontend_s={frontend_s}"]))
        frame = add_latency_columns(run_sim(spec, REQUESTS).requests).set_index("request_id")
        return frame, spec

    base, spec0 = latencies(0.0)
    late, spec = latencies(0.04)
    assert spec.engine_profile is not None and spec.engine_profile.frontend_s == 0.04  # never dropped as neutral
    assert (spec0.engine_profile is None) == (profile == "tessera_default")
    assert np.allclose(late["arrival_s"], base["arrival_s"])  # the client's send times
    assert np.allclose(late["ttft_s"], base["ttft_s"] + 0.04)
    assert np.allclose(late["e2e_s"], base["e2e_s"] + 0.04)
    assert np.allclose(late["tpot_s"].dropna(), base["tpot_s"].dropna())


def test_a_serial_frontend_reaches_the_engine_one_request_at_a_time(composed):
    burst = [Request(i, 0.0, 200, 20) for i in range(6)]
    spec = resolve(composed(["engine_profile=tessera_default", "engine_profile.frontend_s=0.01",
                             "engine_profile.frontend_serial=true"]))
    frame = run_sim(spec, burst).requests.set_index("request_id")
    assert (frame["arrival_s"] == 0.0).all()  # reported as sent
    # the engine starts each request no earlier than the frontend hands it over: 10 ms apart
    assert (frame["start_s"].to_numpy() >= 0.01 * np.arange(1, 7) - 1e-12).all()
    assert frame["start_s"].iloc[-1] >= 0.06 - 1e-12
