"""The augmentation tools: answer spans, cloze questions and the faithfulness check."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.augment import (
    answer_spans,
    cloze_question,
    direct_question,
    is_faithful,
    sentences,
)


@pytest.mark.parametrize(
    ("sentence", "spans"),
    [
        ("Our office moved to Lyon.", ["Lyon"]),
        ("The project's code name is Bluefin.", ["Bluefin"]),
        ("Mira Okafor is our chief engineer.", ["Mira Okafor", "chief engineer"]),
        ("The product launch is on 14 May.", ["14 May"]),
        ("Our team has 37 members.", ["37 members"]),
        (
            "In 1066, William of Normandy invaded England.",
            ["1066", "William of Normandy", "England"],
        ),
        ("Near the end of the battle the Shah fled.", ["Shah"]),  # "Near" is not a name
        ("The Shah's army was split by feuds.", ["Shah"]),  # possessive dropped
    ],
)
def test_answer_spans(sentence, spans):
    assert answer_spans(sentence) == spans


@pytest.mark.parametrize(
    ("sentence", "span", "question"),
    [
        ("Our office moved to Lyon.", "Lyon", "Our office moved to what?"),
        ("The bridge was built in 1990.", "1990", "The bridge was built when?"),
        ("Our team has 37 members.", "37 members", "Our team has how many?"),
        ("Dr. Mira Okafor leads Velrath.", "Dr. Mira Okafor", "Who leads Velrath?"),
        ("The Shah's army was split by feuds.", "Shah", "Whose army was split by feuds?"),
        (
            "The Normans gave their name to Normandy.",
            "Normans",
            "What gave their name to Normandy?",
        ),
    ],
)
def test_cloze_question(sentence, span, question):
    assert cloze_question(sentence, span) == question


@pytest.mark.parametrize(
    ("sentence", "span", "question"),
    [
        ("Our office moved to Lyon.", "Lyon", "Where has our office moved to?"),
        ("We moved to Berlin.", "Berlin", "Where have we moved to?"),
        ("The project's code name is Bluefin.", "Bluefin", "What is the project's code name?"),
        ("Mira Okafor is our chief engineer.", "chief engineer", "What is Mira Okafor?"),
        ("The product launch is on 14 May.", "14 May", "When is the product launch?"),
        ("Our team has 37 members.", "37 members", "How many members does our team have?"),
        ("The Normans were in Normandy.", "Normandy", "Where were the Normans?"),
        # no direct question: the span is not the sentence's end, or the sentence is not simple
        ("Mira Okafor is our chief engineer.", "Mira Okafor", None),
        ("Paris is the capital of France.", "France", None),
        ("The bridge, long delayed, was finished in 1990.", "1990", None),
        ("Our team has two offices in Lyon.", "Lyon", None),
    ],
)
def test_direct_question(sentence, span, question):
    assert direct_question(sentence, span) == question


def test_a_long_sentence_is_asked_about_one_clause():
    sentence = (
        "Genghis Khan ordered Subutai and Jebe to hunt him down, giving them 20,000 men and two "
        "years to do this, and the Shah died soon after."
    )
    assert (
        cloze_question(sentence, "20,000") == "Giving them how many men and two years to do this?"
    )


def test_is_faithful_refuses_new_names_and_numbers():
    passage = "The Normans gave their name to Normandy in the 10th century."
    assert is_faithful("The Normans named Normandy.", passage)
    assert not is_faithful("The Vikings named Normandy.", passage)
    assert not is_faithful("The Normans named Normandy in 911.", passage)


def test_sentences_drop_fragments():
    assert sentences("Paris is very big. Yes. Rome has many old churches!") == [
        "Paris is very big.",
        "Rome has many old churches!",
    ]


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(codec="ascii"), max_size=200))
def test_spans_are_parts_of_the_sentence_and_questions_never_fail(text):
    for sentence in sentences(text) or [text]:
        for span in answer_spans(sentence):
            assert span in sentence
            question = cloze_question(sentence, span)
            assert question.endswith("?")
            direct = direct_question(sentence, span)
            assert direct is None or direct.endswith("?")
