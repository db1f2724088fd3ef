"""Bad workload spec values (what `workload.*` overrides become) are ValueErrors naming the key and the rule.

Hypothesis feeds random values of every type to the numeric keys: a workload or a ValueError, nothing else.
"""
import pytest
from hypothesis import given, settings, strategies as st

from tessera.workload import build_workload
from tests.bad_inputs.corpus import refused


def synth(arrival=None, lengths=None, **extra):
    return {"kind": "synthetic", "num_requests": 4, "arrival": arrival or {"kind": "poisson", "rate": 1.0},
            "lengths": lengths or {"kind": "fixed", "prompt_tokens": 10, "output_tokens": 5}, **extra}


def trace(**options):
    return {"kind": "trace", "name": "azure_code", **options}


NAN, INF = float("nan"), float("inf")

# (id, spec, needles)
CASES = [
    ("trace-limit-zero", trace(limit=0), ["limit", ">= 1"]),
    ("trace-limit-string", trace(limit="abc"), ["limit", "'abc'"]),
    ("trace-limit-fraction", trace(limit=2.5), ["limit", "whole number"]),
    ("trace-limit-bool", trace(limit=True), ["limit"]),
    ("trace-speedup-negative", trace(speedup=-1), ["speedup", "(got -1)"]),
    ("trace-speedup-nan", trace(speedup=NAN), ["speedup", "finite"]),
    ("trace-speedup-inf", trace(speedup=INF), ["speedup", "finite"]),
    ("trace-speedup-string", trace(speedup="fast"), ["speedup", "'fast'"]),
    ("trace-start-nan", trace(start_s=NAN), ["start_s"]),
    ("trace-end-before-start", trace(start_s=5, end_s=5), ["end_s"]),
    ("trace-end-string", trace(end_s="later"), ["end_s"]),
    ("trace-cap-zero", trace(max_prompt_tokens=0), ["max_prompt_tokens"]),
    ("trace-cap-huge", trace(max_total_tokens=1e23), ["max_total_tokens"]),
    ("trace-cap-string", trace(max_total_tokens="8k"), ["max_total_tokens", "'8k'"]),
    ("trace-over-limit", trace(over_limit="cut"), ["over_limit"]),
    ("trace-window-empty", trace(start_s=1e9), ["no request left"]),
    ("trace-format-unknown", trace(format="parquet"), ["format", "parquet"]),
    ("trace-unknown-key", trace(limt=3), ["'limt'", "did you mean 'limit'"]),
    ("num-requests-zero", synth(num_requests=0), ["num_requests"]),
    ("num-requests-string", synth(num_requests="many"), ["num_requests", "'many'"]),
    ("num-requests-huge", synth(num_requests=10**12), ["num_requests", "10,000,000"]),
    ("seed-negative", synth(seed=-1), ["seed", ">= 0"]),
    ("seed-string", synth(seed="x"), ["seed"]),
    ("rate-negative", synth({"kind": "poisson", "rate": -2}), ["workload.arrival", "rate", "(got -2)"]),
    ("rate-denormal", synth({"kind": "poisson", "rate": 5e-324}), ["workload.arrival", "rate", ">= 1e-09"]),
    ("cv-denormal", synth({"kind": "gamma", "rate": 1, "cv": 1e-169}), ["cv", "or >= 0.001"]),
    ("speedup-denormal", trace(speedup=1e-300), ["speedup", ">= 1e-06"]),
    ("rate-zero", synth({"kind": "poisson", "rate": 0}), ["workload.arrival", "rate"]),
    ("rate-nan", synth({"kind": "poisson", "rate": NAN}), ["rate", "finite"]),
    ("rate-inf", synth({"kind": "poisson", "rate": INF}), ["rate", "finite"]),
    ("rate-string", synth({"kind": "poisson", "rate": "abc"}), ["rate", "'abc'"]),
    ("cv-negative", synth({"kind": "gamma", "rate": 1, "cv": -1}), ["cv"]),
    ("cv-inf", synth({"kind": "gamma", "rate": 1, "cv": INF}), ["cv", "finite"]),
    ("arrival-kind-unknown", synth({"kind": "poison", "rate": 1}), ["workload.arrival.kind", "did you mean"]),
    ("arrival-not-mapping", synth("poisson"), ["workload.arrival", "expected a mapping"]),
    ("trace-arrivals-speedup", synth({"kind": "trace", "name": "azure_code", "speedup": 0}), ["speedup"]),
    ("fixed-prompt-zero", synth(lengths={"kind": "fixed", "prompt_tokens": 0, "output_tokens": 5}),
     ["prompt_tokens"]),
    ("fixed-prompt-1e23", synth(lengths={"kind": "fixed", "prompt_tokens": 10**23, "output_tokens": 5}),
     ["prompt_tokens", "10,000,000"]),
    ("fixed-output-float", synth(lengths={"kind": "fixed", "prompt_tokens": 5, "output_tokens": 2.5}),
     ["output_tokens", "whole number"]),
    ("fixed-output-string", synth(lengths={"kind": "fixed", "prompt_tokens": 5, "output_tokens": "5"}),
     ["output_tokens"]),
    ("uniform-reversed", synth(lengths={"kind": "uniform", "prompt_tokens": [9, 2], "output_tokens": [1, 2]}),
     ["prompt_tokens", "lo <= hi"]),
    ("uniform-one-bound", synth(lengths={"kind": "uniform", "prompt_tokens": [9], "output_tokens": [1, 2]}),
     ["prompt_tokens", "[lo, hi]"]),
    ("uniform-scalar", synth(lengths={"kind": "uniform", "prompt_tokens": 9, "output_tokens": [1, 2]}),
     ["prompt_tokens", "[lo, hi]"]),
    ("uniform-huge", synth(lengths={"kind": "uniform", "prompt_tokens": [1, 1e30], "output_tokens": [1, 2]}),
     ["prompt_tokens[1]", "10,000,000"]),
    ("uniform-nan", synth(lengths={"kind": "uniform", "prompt_tokens": [1, 5], "output_tokens": [NAN, 2]}),
     ["output_tokens[0]"]),
    ("sharegpt-cap-negative", synth(lengths={"kind": "sharegpt", "max_total_tokens": -5}), ["max_total_tokens"]),
    ("lengths-kind-unknown", synth(lengths={"kind": "zipf"}), ["workload.lengths.kind"]),
    ("kind-unknown", {"kind": "replay"}, ["workload.kind", "'replay'"]),
    ("kind-missing", {"name": "azure_code"}, ["missing key 'kind'"]),
    ("not-a-mapping", ["azure_code"], ["expected a mapping"]),
]


@pytest.mark.parametrize("spec, needles", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_workload_spec_is_a_value_error_naming_the_key(spec, needles):
    refused(ValueError, lambda: build_workload(spec), *needles)


values = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**25, 10**25), st.booleans(),
                   st.none(), st.text(max_size=5), st.lists(st.integers(-5, 20), max_size=3))


@settings(max_examples=80, deadline=None)
@given(key=st.sampled_from(["num_requests", "seed", "arrival.rate", "arrival.cv", "lengths.prompt_tokens",
                            "lengths.output_tokens"]), value=values)
def test_random_synthetic_values_build_or_raise_value_error(key, value):
    spec = synth({"kind": "gamma", "rate": 2.0, "cv": 1.0})
    where, _, name = key.rpartition(".")
    (spec[where] if where else spec)[name] = value
    try:
        requests = build_workload(spec)
    except ValueError as error:
        assert name in str(error)
        return
    assert all(1 <= r.prompt_tokens <= 10**7 and 1 <= r.output_tokens <= 10**7 for r in requests)
