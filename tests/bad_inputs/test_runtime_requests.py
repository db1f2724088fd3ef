"""Requests the real runtime cannot compute are refused by Engine.add_request / SamplingParams by name.
"""
import numpy as np
import pytest

from tessera.runtime.engine import Engine, EngineConfig
from tessera.runtime.sequence import SamplingParams
from tests.bad_inputs.corpus import refused



@pytest.fixture(scope="module")
def folder(tiny_folder):
    return tiny_folder


@pytest.fixture(scope="module")
def engine(folder):
    return Engine.from_checkpoint(folder, EngineConfig(num_device_blocks=64), device="cpu")



# (id, call on the engine, needles)
REQUESTS = [
    ("empty-prompt", lambda e: e.add_request([]), ["prompt is empty"]),
    ("id-at-vocab-size", lambda e: e.add_request([1, 64]), ["outside the vocabulary [0, 64)"]),
    ("id-negative", lambda e: e.add_request([-1]), ["outside the vocabulary"]),
    ("id-float", lambda e: e.add_request([1.5]), ["[1.5]", "outside the vocabulary"]),
    ("id-string", lambda e: e.add_request(["a"]), ["['a']"]),
    ("id-nested-list", lambda e: e.add_request([[1]]), ["outside the vocabulary"]),
    ("id-numpy-too-big", lambda e: e.add_request(np.array([70])), ["outside the vocabulary"]),
    ("prompt-plus-max-tokens-past-context", lambda e: e.add_request([1] * 120, SamplingParams(max_tokens=9)),
     ["max_position_embeddings=128", "lower max_tokens"]),
    ("max-tokens-huge", lambda e: e.add_request([1], SamplingParams(max_tokens=10**30)), ["max_position_embeddings"]),
    ("max-tokens-zero", lambda e: SamplingParams(max_tokens=0), ["sampling.max_tokens"]),
    ("max-tokens-negative", lambda e: SamplingParams(max_tokens=-1), ["sampling.max_tokens"]),
    ("temperature-negative", lambda e: SamplingParams(temperature=-1.0), ["sampling.temperature"]),
    ("temperature-nan", lambda e: SamplingParams(temperature=float("nan")), ["sampling.temperature"]),
    ("top-p-zero", lambda e: SamplingParams(top_p=0.0), ["sampling.top_p"]),
    ("top-p-above-one", lambda e: SamplingParams(top_p=1.5), ["sampling.top_p"]),
    ("top-p-nan", lambda e: SamplingParams(top_p=float("nan")), ["sampling.top_p"]),
    ("forced-id-below-free", lambda e: SamplingParams(forced_token_ids=(-2,)), ["sampling.forced_token_ids"]),
    ("forced-id-past-vocab", lambda e: e.add_request([1], SamplingParams(forced_token_ids=(64,))),
     ["forced_token_ids", "vocabulary size 64"]),
    ("duplicate-request-id", lambda e: (e.add_request([1], request_id=900), e.add_request([1], request_id=900)),
     ["request id 900 is already used"]),
    ("text-without-tokenizer", lambda e: e.add_request("hello"), ["needs a tokenizer"]),
    pytest.param("max-tokens-fraction", lambda e: SamplingParams(max_tokens=2.5), ["sampling.max_tokens"]),
    pytest.param("max-tokens-string", lambda e: SamplingParams(max_tokens="3"), ["sampling.max_tokens"]),
    pytest.param("temperature-inf", lambda e: SamplingParams(temperature=float("inf")), ["sampling.temperature"]),
    pytest.param("arrival-nan", lambda e: e.add_request([1], arrival_s=float("nan")), ["arrival_s"]),
    pytest.param("request-id-negative", lambda e: e.add_request([1], request_id=-3), ["request id"]),
]


def _id(case):
    return case.values[0] if hasattr(case, "values") else case[0]


def test_prompt_over_the_step_budget_without_chunked_prefill_is_refused(folder):
    engine = Engine.from_checkpoint(folder, EngineConfig(num_device_blocks=64, chunked_prefill=False,
                                                         max_num_batched_tokens=16), device="cpu")
    refused(ValueError, lambda: engine.add_request([1] * 20, SamplingParams(max_tokens=2)), "max_num_batched_tokens",
            "chunked_prefill")


@pytest.mark.parametrize("name, call, needles", REQUESTS, ids=[_id(c) for c in REQUESTS])
def test_bad_runtime_request_is_a_value_error_naming_it(engine, name, call, needles):
    refused(ValueError, lambda: call(engine), *needles)


CASES = [_id(c) for c in REQUESTS] + ["prompt-over-step-budget-no-chunking"]
