"""MoA workload: determinism, routing skew, request ids and stages, aggregator prompts, answer model."""
import numpy as np
import pytest

from tessera.aggregation import make_aggregator
from tessera.workload.moa import (AGGREGATOR_STAGE, EXPERT_STAGE, generate_moa_workload,
                                  moa_experts, routing_probabilities)
from tessera.workload.moa_defaults import DATASETS, MoAConfig, assumptions


@pytest.fixture(scope="module")
def workload():
    return generate_moa_workload(MoAConfig(datasets=("mmlu_pro", "gpqa")), seed=3)


def test_pool_and_datasets_match_symbolic_moe():
    experts = moa_experts()
    assert len(experts) == 16
    reasoning = {name for name, e in experts.items() if e.kind == "reasoning"}
    assert reasoning == {"DeepSeek-R1-Distill-Qwen-7B", "DeepSeek-R1-Distill-Llama-8B"}
    assert {e.max_output_tokens for e in experts.values()} == {4096, 32768}
    assert {n: d.num_queries for n, d in DATASETS.items()} == {
        "mmlu_pro": 2100, "gpqa": 198, "aime": 30, "medmcqa": 4183}
    assert DATASETS["medmcqa"].aggregator == "EXAONE-3.5-7.8B-Instruct"


def test_same_seed_same_workload(workload):
    again = generate_moa_workload(MoAConfig(datasets=("mmlu_pro", "gpqa")), seed=3)
    assert again.queries == workload.queries
    other = generate_moa_workload(MoAConfig(datasets=("mmlu_pro", "gpqa")), seed=4)
    assert other.queries != workload.queries


def test_reasoning_experts_get_a_third_of_prompts(workload):
    probs = routing_probabilities(workload.config, "mmlu_pro")
    reasoning = [n for n, e in moa_experts().items() if e.kind == "reasoning"]
    assert sum(probs[n] for n in reasoning) == pytest.approx(1 / 3)
    counts = workload.expert_counts()
    share = sum(counts.get(n, 0) for n in reasoning) / sum(counts.values())
    assert share == pytest.approx(1 / 3, abs=0.02)


def test_expert_requests(workload):
    requests = workload.expert_requests()
    assert len(requests) == 3 * (2100 + 198)
    assert [r.request_id for r in requests] == list(range(len(requests)))
    assert {r.stage for r in requests} == {EXPERT_STAGE}
    query, slot = workload.slot_of(requests[7].request_id)
    assert query.query_id == requests[7].query_id and query.slots[slot].expert == requests[7].model
    caps = {n: e.max_output_tokens for n, e in moa_experts().items()}
    assert all(1 <= r.output_tokens <= caps[r.model] for r in requests)
    assert all(r.prompt_tokens >= 8 for r in requests)


def test_aggregator_request_strips_reasoning(workload):
    query = next(q for q in workload.queries if any(s.reasoning_tokens for s in q.slots))
    request = workload.aggregator_request(query, arrival_s=12.5)
    assert request.stage == AGGREGATOR_STAGE and request.arrival_s == 12.5
    assert request.model == query.aggregator and request.query_id == query.query_id
    cfg = workload.config
    expected = (cfg.aggregator_instruction_tokens + query.question_tokens
                + sum(cfg.response_header_tokens + s.answer_tokens for s in query.slots))
    assert request.prompt_tokens == expected
    unstripped = generate_moa_workload(MoAConfig(datasets=("mmlu_pro", "gpqa"), strip_reasoning=False),
                                       seed=3)
    longer = unstripped.aggregator_request(unstripped.queries[query.query_id], 0.0)
    assert longer.prompt_tokens == expected + sum(s.reasoning_tokens for s in query.slots)


def test_answer_model_marginals_and_correlation():
    def stats(rho):
        cfg = MoAConfig(datasets=("medmcqa",), num_queries={"medmcqa": 3000}, error_correlation=rho,
                        unparseable_prob=0.0)
        w = generate_moa_workload(cfg, seed=0)
        right = [s.answer == q.reference_answer for q in w.queries for s in q.slots
                 if s.expert == "Bio-Medical-Llama-3-8B" and s.output_tokens < 4096]
        all_agree = np.mean([len(set(q.answers)) == 1 for q in w.queries])
        return np.mean(right), all_agree

    accuracy, agree_low = stats(0.0)
    assert accuracy == pytest.approx(0.62, abs=0.05)  # the configured accuracy of BioLlama
    _, agree_high = stats(0.8)
    assert agree_high > agree_low + 0.05  # correlated errors: experts agree (and err) together


def test_bypass_uses_modal_answer(workload):
    policy = make_aggregator("unanimous")
    outcomes = [workload.aggregate(q, policy, 1.0) for q in workload.queries[:300]]
    bypassed = [o for o in outcomes if o.request is None]
    assert bypassed and all(o.decision.bypass for o in bypassed)
    for query, outcome in zip(workload.queries, outcomes):
        if outcome.request is None:
            assert outcome.final_answer == query.answers[0]
        else:
            assert outcome.final_answer == query.aggregator_answer


def test_bad_config_names_the_field():
    with pytest.raises(ValueError, match="moa.reasoning_share"):
        MoAConfig(reasoning_share=1.5)
    with pytest.raises(ValueError, match="moa.datasets"):
        MoAConfig(datasets=("mmlu",))
    with pytest.raises(ValueError, match="num_queries"):
        MoAConfig(num_queries={"gpqa": 0})
    with pytest.raises(ValueError, match="unknown experts"):
        routing_probabilities(MoAConfig(routing_weights={"mmlu_pro": {"GPT-5": 1.0}}), "mmlu_pro")
    assert "error_correlation" in assumptions(MoAConfig())
