"""The MoA expert stage as a single-model workload: the routed prompts of one expert, renumbered."""
import pytest

from tessera.workload import build_workload
from tessera.workload.moa import generate_moa_workload
from tessera.workload.moa_defaults import MoAConfig


def test_one_experts_prompts_become_a_plain_workload():
    requests = build_workload({"kind": "moa", "dataset": "gpqa", "expert": "DeepSeek-R1-Distill-Llama-8B",
                               "num_queries": 40, "seed": 3})
    routed = [r for r in generate_moa_workload(MoAConfig(datasets=("gpqa",), num_queries={"gpqa": 40}), 3)
              .expert_requests() if r.model == "DeepSeek-R1-Distill-Llama-8B"]
    assert [r.request_id for r in requests] == list(range(len(routed)))
    assert [(r.prompt_tokens, r.output_tokens) for r in requests] == [(r.prompt_tokens, r.output_tokens)
                                                                      for r in routed]
    assert all(r.model is None and r.arrival_s == 0.0 for r in requests)


def test_arrival_rate_spaces_requests_and_bad_values_name_the_key():
    requests = build_workload({"kind": "moa", "dataset": "aime", "arrival_rate": 2.0})
    assert requests[1].arrival_s == pytest.approx(0.5)
    with pytest.raises(ValueError, match="dataset='mmlu'"):
        build_workload({"kind": "moa", "dataset": "mmlu"})
    with pytest.raises(ValueError, match="expert='nobody'"):
        build_workload({"kind": "moa", "dataset": "aime", "expert": "nobody"})
