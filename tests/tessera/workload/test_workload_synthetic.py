"""Synthetic workloads: same seed, same requests; and the describe() summary."""
import math

import pytest

from tessera.workload import burst, describe, fixed, gamma, poisson, sharegpt, synthetic


def test_same_seed_identical_output():
    first = synthetic(500, gamma(2.0, 2.0), sharegpt(), seed=3)
    assert first == synthetic(500, gamma(2.0, 2.0), sharegpt(), seed=3)
    assert first != synthetic(500, gamma(2.0, 2.0), sharegpt(), seed=4)


def test_requests_are_ordered_and_numbered():
    requests = synthetic(100, poisson(5.0), fixed(10, 2), seed=0, model="m")
    assert [r.request_id for r in requests] == list(range(100))
    assert requests[0].arrival_s == 0.0
    assert all(a.arrival_s <= b.arrival_s for a, b in zip(requests, requests[1:]))
    assert {r.model for r in requests} == {"m"}
    assert all(type(r.prompt_tokens) is int and type(r.arrival_s) is float for r in requests)


def test_describe():
    summary = describe(synthetic(4, gamma(1.0, 0.0), fixed(10, 2)))
    assert summary["count"] == 4 and summary["span_s"] == 3.0
    assert summary["rate_per_s"] == 1.0
    assert summary["prompt_mean"] == summary["prompt_p99"] == 10 and summary["output_p50"] == 2
    assert math.isinf(describe(synthetic(3, burst(), fixed(1, 1)))["rate_per_s"])
    assert describe([]) == {"count": 0}


def test_bad_num_requests():
    with pytest.raises(ValueError, match="num_requests"):
        synthetic(0, poisson(1.0), fixed(1, 1))
