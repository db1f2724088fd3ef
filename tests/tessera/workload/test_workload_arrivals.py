"""Arrival processes: Poisson rate, gamma CV, burst, trace-driven times."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tessera.workload import burst, gamma, load_trace, poisson, trace_arrivals

NUM_ARRIVALS = 20_000


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), rate=st.floats(0.1, 100.0))
def test_poisson_mean_rate(seed, rate):
    arrival = poisson(rate).sample(NUM_ARRIVALS, np.random.default_rng(seed))
    assert arrival[0] == 0.0 and np.all(np.diff(arrival) >= 0)
    assert (NUM_ARRIVALS - 1) / arrival[-1] == pytest.approx(rate, rel=0.05)


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), rate=st.floats(0.1, 100.0), cv=st.floats(0.2, 3.0))
def test_gamma_rate_and_cv(seed, rate, cv):
    gaps = np.diff(gamma(rate, cv).sample(NUM_ARRIVALS, np.random.default_rng(seed)))
    assert 1 / gaps.mean() == pytest.approx(rate, rel=0.1)
    assert gaps.std() / gaps.mean() == pytest.approx(cv, rel=0.1)


def test_gamma_cv_zero_is_evenly_spaced():
    assert np.allclose(gamma(4.0, 0.0).sample(5, np.random.default_rng(0)), [0, .25, .5, .75, 1])


def test_burst_is_all_at_zero():
    assert not burst().sample(10, np.random.default_rng(0)).any()


def test_trace_arrivals_replay_recorded_times():
    times = trace_arrivals("azure_code", speedup=2.0).sample(10, np.random.default_rng(0))
    assert times.tolist() == pytest.approx([r.arrival_s / 2 for r in load_trace("azure_code",
                                                                               limit=10)])
    with pytest.raises(ValueError, match="fewer than"):
        trace_arrivals("azure_code").sample(10**6, np.random.default_rng(0))


@pytest.mark.parametrize("make, message", [
    (lambda: poisson(0), "rate"), (lambda: gamma(1.0, -1), "cv"),
    (lambda: trace_arrivals("azure_code", speedup=0), "speedup"),
])
def test_bad_parameters_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()
