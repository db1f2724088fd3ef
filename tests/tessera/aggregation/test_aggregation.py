"""Bypass logic of the four aggregation policies on hand-made answer sets."""
import pytest

from tessera.aggregation import POLICIES, ballot, make_aggregator, normalise

EXPERTS = ("llama", "qwen", "phi")


@pytest.mark.parametrize("raw, parsed", [
    ("b", "B"), (" 042 ", "42"), ("so the answer is (C)", "C"),
    ("x = \\boxed{17}", "17"), ("3.0", "3"), ("", None), (None, None), ("two words", None)])
def test_normalise(raw, parsed):
    assert normalise(raw) == parsed


def test_always_never_bypasses_but_reports_agreement():
    decision = make_aggregator("always").decide(["A", "A", "A"], EXPERTS)
    assert not decision.bypass and decision.answer is None and decision.agreement == 1.0


@pytest.mark.parametrize("answers, bypass, answer", [
    (["A", "a", "A"], True, "A"),
    (["A", "A", "B"], False, None),
    (["A", "A", None], False, None),  # an abstention never counts as agreement
    ([None, None, None], False, None),
])
def test_unanimous(answers, bypass, answer):
    decision = make_aggregator("unanimous").decide(answers, EXPERTS)
    assert (decision.bypass, decision.answer) == (bypass, answer)


def test_majority_threshold_and_abstentions():
    majority = make_aggregator("majority")  # 2/3
    assert majority.decide(["A", "A", "B"], EXPERTS).answer == "A"
    assert majority.decide(["A", "A", None], EXPERTS).bypass
    assert not majority.decide(["A", "B", None], EXPERTS).bypass
    strict = make_aggregator("majority", threshold=0.9)
    assert not strict.decide(["A", "A", "B"], EXPERTS).bypass


def test_duplicate_experts_vote_once_by_default():
    # llama answered twice: deduplicated there are 2 voters who disagree.
    answers, experts = ["A", "A", "B"], ["llama", "llama", "qwen"]
    assert not make_aggregator("majority").decide(answers, experts).bypass
    assert make_aggregator("majority", count_duplicates=True).decide(answers, experts).bypass
    # one expert sampled three times is a single voter: never enough to skip the aggregator
    assert not make_aggregator("unanimous").decide(["A"] * 3, ["llama"] * 3).bypass
    # an expert whose samples disagree abstains
    assert ballot(["A", "B", "A"], ["llama", "llama", "qwen"]).votes == (("llama", None), ("qwen", "A"))


def test_weighted_uses_reliabilities():
    weights = {"llama": 0.9, "qwen": 0.2, "phi": 0.2}
    policy = make_aggregator("weighted", weights=weights, threshold=0.75)
    decision = policy.decide(["A", "B", "B"], EXPERTS)
    assert not decision.bypass and decision.agreement == pytest.approx(0.9 / 1.3)
    decision = policy.decide(["A", "A", "B"], EXPERTS)
    assert decision.bypass and decision.answer == "A" and decision.agreement == pytest.approx(1.1 / 1.3)


def test_bad_configuration_is_refused():
    with pytest.raises(ValueError, match="threshold"):
        make_aggregator("majority", threshold=1.5)
    with pytest.raises(ValueError, match="one of"):
        make_aggregator("vote")
    with pytest.raises(ValueError, match="one expert name per answer"):
        make_aggregator("unanimous").decide(["A"], EXPERTS)
    assert set(POLICIES) == {"always", "unanimous", "majority", "weighted"}
