"""build_workload: a valid spec equals the direct calls; a bad one names key, choices and fix."""
import pytest

from tessera.workload import (TraceError, build_workload, burst, load_trace, poisson, servegen_r1,
                              sharegpt, synthetic)


def test_trace_spec():
    assert build_workload({"kind": "trace", "name": "azure_code", "limit": 1000}) == \
        load_trace("azure_code", limit=1000)


def test_synthetic_spec():
    spec = {"kind": "synthetic", "num_requests": 500, "seed": 1,
            "arrival": {"kind": "poisson", "rate": 2.0}, "lengths": {"kind": "sharegpt"}}
    assert build_workload(spec) == synthetic(500, poisson(2.0), sharegpt(), seed=1)


def test_servegen_spec():
    spec = {"kind": "synthetic", "num_requests": 50, "arrival": {"kind": "burst"},
            "lengths": {"kind": "servegen_r1", "window_start_s": 21600, "max_output_tokens": 4096}}
    assert build_workload(spec) == synthetic(50, burst(), servegen_r1(21600, None, 4096))


@pytest.mark.parametrize("spec, fragments", [
    ({"kind": "trace", "name": "azure_code", "limt": 5},
     ["workload", "'limt'", "allowed keys", "limit", "did you mean 'limit'", "fix"]),
    ({"kind": "replay", "name": "azure_code"},
     ["workload.kind", "'replay'", "trace, synthetic", "fix"]),
    ({"name": "azure_code"}, ["missing key 'kind'", "trace, synthetic"]),
    ({"kind": "synthetic", "arrival": {"kind": "burst"}, "lengths": {"kind": "sharegpt"}},
     ["missing required key 'num_requests'"]),
    ({"kind": "synthetic", "num_requests": 5, "arrival": {"kind": "poison", "rate": 1},
      "lengths": {"kind": "sharegpt"}},
     ["workload.arrival.kind", "'poison'", "poisson, gamma, burst, trace",
      "did you mean 'poisson'"]),
    ({"kind": "synthetic", "num_requests": 5, "arrival": {"kind": "poisson", "rate": -1},
      "lengths": {"kind": "sharegpt"}},
     ["workload.arrival (kind 'poisson')", "rate must be a finite number"]),
    ({"kind": "synthetic", "num_requests": 5, "arrival": {"kind": "poisson", "rate": 1},
      "lengths": {"kind": "fixed", "prompt": 5, "output_tokens": 3}},
     ["workload.lengths", "'prompt'", "prompt_tokens", "fix"]),
    ({"kind": "synthetic", "num_requests": 5, "arrival": {"kind": "poisson", "rate": 1},
      "lengths": "sharegpt"}, ["workload.lengths", "expected a mapping"]),
])
def test_bad_specs_name_the_problem(spec, fragments):
    with pytest.raises(ValueError) as caught:
        build_workload(spec)
    for fragment in fragments:
        assert fragment in str(caught.value)


def test_trace_error_keeps_its_type(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:00:00,-1,3\n")
    with pytest.raises(TraceError, match="data row 1"):
        build_workload({"kind": "trace", "name": str(path)})
