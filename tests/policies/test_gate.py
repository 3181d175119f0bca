"""The learning gate as pure functions: which documents are learned and why, and which chat
messages state a fact or a correction."""

import pytest

from policies.gate import (
    LEARN,
    SKIP,
    GateInputs,
    GateThresholds,
    decide_learning,
    detect_statement,
    gate_record,
    novelty_of,
    statement_probes,
)

T = GateThresholds(min_novelty=0.1, known_logprob=-1.0)


def inputs(**changes) -> GateInputs:
    fields = dict(
        novelty=0.6,
        nearest_document=None,
        nearest_learned=False,
        probe_logprob=-3.2,
        estimated_seconds=90.0,
        budget_left_seconds=1800.0,
    )
    return GateInputs(**{**fields, **changes})


def test_new_and_unknown_is_learned():
    d = decide_learning(inputs(), T)
    assert d.decision == LEARN and d.learn
    assert "novelty 0.60" in d.reason and "-3.20 < -1.00" in d.reason


def test_known_to_the_model_is_skipped():
    d = decide_learning(inputs(probe_logprob=-0.4), T)
    assert d.decision == SKIP and "already answers its probes" in d.reason


def test_near_copy_of_a_learned_document_is_skipped_but_not_of_an_unlearned_one():
    d = decide_learning(inputs(novelty=0.02, nearest_document=4, nearest_learned=True), T)
    assert d.decision == SKIP and "near copy of learned document 4" in d.reason
    d = decide_learning(inputs(novelty=0.02, nearest_document=4, nearest_learned=False), T)
    assert d.decision == LEARN


def test_over_budget_is_skipped_even_when_asked():
    d = decide_learning(inputs(estimated_seconds=600, budget_left_seconds=120), T)
    assert d.decision == SKIP and "budget" in d.reason and "~10.0 min" in d.reason
    d = decide_learning(inputs(estimated_seconds=600, budget_left_seconds=120, requested=True), T)
    assert d.decision == SKIP


def test_asked_to_learn_overrides_known_and_near_copy():
    d = decide_learning(
        inputs(probe_logprob=-0.1, novelty=0.0, nearest_learned=True, requested=True), T
    )
    assert d.decision == LEARN and "asked" in d.reason


def test_no_probes_counts_as_unknown():
    d = decide_learning(inputs(probe_logprob=None), T)
    assert d.decision == LEARN and "no probes" in d.reason


def test_novelty_and_record():
    assert novelty_of([]) == 1.0
    assert novelty_of([0.2, 0.75]) == pytest.approx(0.25)
    record = gate_record(inputs(), decide_learning(inputs(), T))
    assert list(record)[:2] == ["decision", "reason"]
    assert record["novelty"] == 0.6 and record["requested"] is False


@pytest.mark.parametrize(
    "message, kind, text",
    [
        ("our office moved to Lyon", "fact", "Our office moved to Lyon."),
        ("No, our office moved to Lyon.", "correction", "Our office moved to Lyon."),
        ("Actually the meeting is on Tuesday", "correction", "The meeting is on Tuesday."),
        ("remember that my name is Ada", "fact", "My name is Ada."),
        ("That's wrong: the launch was in May.", "correction", "The launch was in May."),
        ("Ada Lovelace was born in 1815.", "fact", "Ada Lovelace was born in 1815."),
    ],
)
def test_statements_are_detected(message, kind, text):
    found = detect_statement(message)
    assert found is not None and found.kind == kind and found.text == text


@pytest.mark.parametrize(
    "message",
    [
        "Where did our office move?",
        "when was the tower built",
        "Is the office in Lyon",
        "hello there, how are you",
        "thanks, that is great",
        "ok",
        "/feed notes.txt",
        "Tell me about Paris",
        "banana split recipe",
    ],
)
def test_questions_commands_and_chit_chat_are_not_statements(message):
    assert detect_statement(message) is None


def test_a_short_statement_is_probed_on_its_answer_spans():
    assert statement_probes("our conversation", "Our office moved to Lyon in March.") == [
        ("Our office moved to what in March?", "Lyon"),
        ("Our office moved to Lyon when?", "March"),
    ]
    assert statement_probes("our conversation", "Our office moved to Lyon.") == [
        ("Our office moved to what?", "Lyon"),
        ("Where has our office moved to?", "Lyon"),  # as a person would ask it
    ]
    # no span to ask for: the sentence's ending is held out
    [(question, answer)] = statement_probes("our conversation", "we moved out yesterday evening.")
    assert question.endswith('end: "we moved out yesterday ..."?') and answer == "evening"
    assert statement_probes("t", "Hi there.") == []
