"""Context-length policies: every request over the model's context is clipped or refused, and counted.

Covers each policy's rule on hand-made requests and the default experiment's counts on the Azure code trace.
"""
import pytest

from tessera.types import Request
from tessera.workload.context_limit import CONTEXT_POLICIES, apply_context_limit

REQS = [Request(0, 0.0, 100, 50), Request(1, 1.0, 4000, 200), Request(2, 2.0, 5000, 10), Request(3, 3.0, 10, 5000)]


@pytest.mark.parametrize("policy", CONTEXT_POLICIES)
def test_every_served_request_fits_and_counts_add_up(policy):
    kept, report = apply_context_limit(REQS, 4096, policy)
    assert all(r.prompt_tokens + r.output_tokens <= 4096 and r.prompt_tokens >= 1 and r.output_tokens >= 1
               for r in kept)
    assert report.num_over_limit == 3
    assert report.num_clipped + report.num_refused == 3
    assert len(kept) == 4 - report.num_refused
    assert kept[0] == REQS[0]  # a fitting request is untouched


def test_policy_rules():
    kept, _ = apply_context_limit(REQS, 4096, "clip_prompt")
    assert [(r.prompt_tokens, r.output_tokens) for r in kept[1:]] == [(3896, 200), (4086, 10), (1, 4095)]
    kept, report = apply_context_limit(REQS, 4096, "clip_output")
    assert [(r.prompt_tokens, r.output_tokens) for r in kept[1:]] == [(4000, 96), (10, 4086)]
    assert report.num_refused == 1  # the 5,000-token prompt cannot fit at all
    kept, report = apply_context_limit(REQS, 4096, "refuse")
    assert kept == REQS[:1] and report.num_refused == 3


def test_bad_policy_names_the_key():
    with pytest.raises(ValueError, match="workload.context_limit='cut'.*clip_prompt"):
        apply_context_limit(REQS, 4096, "cut")


def test_azure_code_on_llama2_7b_counts_the_long_prompts():
    from tessera.workload import load_trace
    requests = load_trace("azure_code")
    _, report = apply_context_limit(requests, 4096, "refuse")
    assert report.num_requests == 8819 and report.num_refused == report.num_over_limit > 1000


def test_with_lengths_is_replace_on_every_field():
    import dataclasses

    from tessera.workload.context_limit import with_lengths

    values = {"request_id": 7, "arrival_s": 1.25, "prompt_tokens": 900, "output_tokens": 300, "model": "m",
              "query_id": 3, "stage": "expert"}
    assert set(values) == {f.name for f in dataclasses.fields(Request)}, "a new Request field: add it to with_lengths"
    request = Request(**values)
    assert with_lengths(request, 10, 20) == dataclasses.replace(request, prompt_tokens=10, output_tokens=20)
