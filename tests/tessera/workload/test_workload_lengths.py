"""Length samplers: marginal means against the aggregates in data/*/SOURCE.md, caps, determinism."""
import numpy as np
import pytest

from tessera.workload import (arxiv, fixed, servegen_r1, sharegpt, trace_lengths, uniform,
                              LengthSampler)
from tessera.workload.servegen import WINDOW_STARTS_S, servegen_components

NUM_SAMPLES = 200_000


def sample(sampler, n=NUM_SAMPLES, seed=0):
    return sampler.sample(n, np.random.default_rng(seed))


def test_fixed_and_uniform():
    prompt, output = sample(fixed(128, 16), 5)
    assert prompt.tolist() == [128] * 5 and output.tolist() == [16] * 5
    prompt, output = sample(uniform([10, 20], (1, 3)), 10_000)
    assert prompt.min() == 10 and prompt.max() == 20 and set(output.tolist()) == {1, 2, 3}
    prompt, output = sample(uniform((100, 200), (50, 60), max_total_tokens=180), 1000)
    assert (prompt + output).max() <= 180 and output.min() >= 1


@pytest.mark.parametrize("make", [lambda: fixed(0, 5), lambda: uniform((5, 1), (1, 1)),
                                  lambda: uniform((0, 3), (1, 1))])
def test_bad_lengths_are_refused(make):
    with pytest.raises(ValueError, match="1 <= lo|>= 1"):
        make()


@pytest.mark.parametrize("make, prompt_mean, output_mean", [
    (sharegpt, 2340, 439), (arxiv, 2588, 291),
    (lambda: trace_lengths("azure_conv"), 1155, 211),
])
def test_empirical_means_match_source_md(make, prompt_mean, output_mean):
    prompt, output = sample(make())
    assert prompt.mean() == pytest.approx(prompt_mean, rel=0.03)
    assert output.mean() == pytest.approx(output_mean, rel=0.03)


def test_sharegpt_keeps_the_in_out_pairing():
    sampler = sharegpt()
    rows = set(zip(sampler.prompt_tokens.tolist(), sampler.output_tokens.tolist()))
    prompt, output = sample(sampler, 1000)
    assert all(pair in rows for pair in zip(prompt.tolist(), output.tolist()))


def test_empirical_caps_clip_or_drop():
    prompt, output = sample(sharegpt(max_total_tokens=2048))
    assert (prompt + output).max() <= 2048 and output.min() >= 1
    dropped = sharegpt(max_prompt_tokens=1024, over_limit="drop")
    assert dropped.prompt_tokens.max() <= 1024 and len(dropped.prompt_tokens) < 30731


def test_servegen_rate_weighted_means_match_source_md():
    sampler = servegen_r1()
    prompt_mean, output_mean = sampler.mean_tokens()  # exact mixture means
    assert prompt_mean == pytest.approx(1268, abs=1) and output_mean == pytest.approx(1527, abs=1)
    assert sampler.reason_ratio_pmf().mean == pytest.approx(0.70, abs=0.005)
    prompt, output, ratio = sampler.sample_with_reasoning(NUM_SAMPLES, np.random.default_rng(0))
    assert prompt.mean() == pytest.approx(1268, rel=0.05)
    assert output.mean() == pytest.approx(1527, rel=0.03)
    assert np.median(output) == pytest.approx(792, rel=0.03)
    assert ratio.mean() == pytest.approx(0.70, abs=0.01)
    assert output.max() <= 32768 and prompt.min() >= 1 and (0 <= ratio).all() and (ratio < 1).all()


def test_servegen_windows_clients_and_cap():
    assert {c.window_start_s for c in servegen_components()} == set(WINDOW_STARTS_S)
    night = servegen_r1(window_start_s=0, clients=[0, 1])
    assert {c.client_id for c in night.components} <= {0, 1}
    assert {c.window_start_s for c in night.components} == {0}
    _, output = sample(servegen_r1(max_output_tokens=1000), 10_000)
    assert output.max() == 1000
    with pytest.raises(ValueError, match="window_start_s"):
        servegen_r1(window_start_s=5).components
    with pytest.raises(ValueError, match="unknown ServeGen client"):
        servegen_r1(clients=[999]).components


@pytest.mark.parametrize("make", [lambda: fixed(3, 4), lambda: uniform((1, 9), (1, 9)), sharegpt,
                                  servegen_r1])
def test_samplers_are_seeded_and_typed(make):
    sampler = make()
    assert isinstance(sampler, LengthSampler)
    first, second = sample(sampler, 100, seed=7), sample(sampler, 100, seed=7)
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    assert first[0].dtype == np.int64 and first[1].dtype == np.int64


def test_servegen_fast_parse_equals_literal_eval():
    import ast
    import json

    from tessera.paths import data_path
    from tessera.workload.servegen import _parse_pmf

    fields = json.loads(data_path("servegen-deepseek-r1", "chunk-0-dataset.json").read_text())["0"]
    for text in fields.values():
        expected = ast.literal_eval(text)
        pmf = _parse_pmf(text)
        assert pmf.values.tolist() == sorted(expected)
        total = sum(expected.values())
        assert pmf.probs == pytest.approx([expected[v] / total for v in sorted(expected)])
    assert _parse_pmf("{}") is None and _parse_pmf("") is None
    with pytest.raises(ValueError):  # not a plain literal: the literal_eval fallback refuses it
        _parse_pmf("{2: 1/2, 1: 0.5}")
