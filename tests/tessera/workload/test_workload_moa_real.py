"""Generated questions, answer parsing and skill routing of the MoA-on-real-models workload."""
import pytest

from tessera.workload.moa_parse import parse_answer
from tessera.workload.moa_questions import SKILLS, generate_questions
from tessera.workload.moa_real import DEFAULT_EXPERTS, aggregator_messages, build_experts, route


def test_questions_are_seeded_and_cover_every_skill():
    a, b = generate_questions(12, seed=3), generate_questions(12, seed=3)
    assert a == b and a != generate_questions(12, seed=4)
    assert {q.skill for q in a} == set(SKILLS)
    for q in a:
        if q.skill == "facts":
            assert q.answer in "ABCD" and len(q.choices) == 4
        else:
            assert q.answer.lstrip("-").isdigit() and not q.choices


def test_arithmetic_reference_answers_are_right():
    for q in generate_questions(30, seed=0):
        if q.skill == "arithmetic":
            expr = q.text.removeprefix("What is ").removesuffix("?").replace("times", "*")
            assert str(eval(expr)) == q.answer  # noqa: S307 (our own generated text)


def test_parse_answer_reads_explicit_last_and_choice_forms():
    q = next(q for q in generate_questions(9, seed=0) if not q.is_choice)
    assert parse_answer("3 + 4 = 7, so... Answer: 12", q) == "12"
    assert parse_answer("I think it is 1,200 apples", q) == "1200"
    assert parse_answer("no idea", q) is None
    mc = next(q for q in generate_questions(9, seed=0) if q.is_choice)
    right = mc.choices["ABCD".index(mc.answer)]
    assert parse_answer(f"Answer: {mc.answer}", mc) == mc.answer
    assert parse_answer(f"It must be {right}.", mc) == mc.answer
    assert parse_answer("B) whatever", mc) == "B"


def test_routing_is_skewed_by_skill_and_seeded():
    experts = build_experts([dict(e) for e in DEFAULT_EXPERTS])
    questions = generate_questions(60, seed=1)
    routed = route(questions, experts, 2, seed=5)
    assert routed == route(questions, experts, 2, seed=5)
    assert all(len(set(r.experts)) == 2 for r in routed)
    facts = [r for r in routed if r.question.skill == "facts"]
    counts = {e.name: sum(e.name in r.experts for r in facts) for e in experts}
    assert counts["instruct-facts"] > counts["reasoner-math"]
    with pytest.raises(ValueError, match="experts_per_query"):
        route(questions, experts, 5, seed=0)


def test_bad_profiles_name_the_field():
    with pytest.raises(ValueError, match="kind"):
        build_experts([{"name": "x", "kind": "thinking", "system_prompt": ""}])
    with pytest.raises(ValueError, match="unique"):
        build_experts([{"name": "x", "kind": "instruct", "system_prompt": ""}] * 2)


def test_aggregator_prompt_shows_every_answer():
    experts = build_experts([dict(e) for e in DEFAULT_EXPERTS])
    q = generate_questions(1, seed=0)[0]
    text = aggregator_messages(experts[0], q, [("a", "so 5", "5"), ("b", "hmm", None)])[1]["content"]
    assert "answer: 5" in text and "answer: none" in text and q.text in text
