import math

import pytest

from agent.core.answering import (
    ANSWER_PROMPT,
    Graded,
    Question,
    answer_and_grade,
    contains_gold,
    exact_match,
    first_line,
    format_question,
    normalize_answer,
    question_prompt,
    short_answer,
    token_f1,
)
from agent.core.config import EvalConfig


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("The Eiffel Tower", "eiffel tower"),
        ("an apple a day", "apple day"),
        ("Theatre and another", "theatre and another"),  # articles only as whole words
        ("Paris, France!", "paris france"),
        ("  the   river\tSeine \n", "river seine"),
        ("U.S.A.", "usa"),
        ("1,889", "1889"),
        ("A", ""),
    ],
)
def test_normalize_answer(text, normalized):
    assert normalize_answer(text) == normalized


def test_exact_match_ignores_case_articles_and_punctuation():
    assert exact_match("the Seine.", "Seine") == 1.0
    assert exact_match("Seine river", "Seine") == 0.0


def test_token_f1():
    # pred {river, seine, in, paris} vs gold {seine, river}: precision 1/2, recall 1
    assert token_f1("river Seine in Paris", "the Seine river") == pytest.approx(2 / 3)
    assert token_f1("Paris", "Paris") == 1.0
    assert token_f1("Rome", "Paris") == 0.0
    assert token_f1("", "Paris") == 0.0
    assert token_f1("Paris Paris", "Paris") == pytest.approx(2 / 3)  # repeats count once each


def test_contains_gold_on_word_boundaries():
    assert contains_gold("It was built in 1990.", "1990") == 1.0
    assert contains_gold("It was built in 19901.", "1990") == 0.0
    assert contains_gold("Parisian food", "Paris") == 0.0
    assert contains_gold("The river Seine, of course", "the Seine") == 1.0
    assert contains_gold("The river Seine, of course", "Seine river") == 0.0  # order matters
    assert contains_gold("anything at all", "the") == 0.0  # empty gold after normalization


def test_first_line():
    assert first_line("\n  Paris.\nQuestion: next") == "Paris."
    assert first_line("") == ""


def test_question_prompt_is_seals_closed_book_prompt(runtime):
    raw = question_prompt(runtime, "When was the tower built?", EvalConfig())
    assert raw == ANSWER_PROMPT.format(question="When was the tower built?")
    assert raw.startswith("Let's answer a question directly and concisely.\nQuestion: ")
    assert raw.endswith("When was the tower built?\nAnswer:\n")
    chat = question_prompt(runtime, "When was the tower built?", EvalConfig(use_chat_template=True))
    assert chat.startswith("User: Let's answer") and chat.endswith("Assistant:")


def test_answer_and_grade_on_tiny_model(runtime):
    questions = [
        Question("What is the capital of France?", "Paris"),
        Question("When was the tower built?", "1889"),
        Question("Which river flows through Rome?", "the Tiber"),
    ]
    cfg = EvalConfig(max_answer_tokens=6, answer_batch_size=2)
    graded = answer_and_grade(runtime, questions, cfg)
    assert [(g.question, g.gold) for g in graded] == [(q.question, q.answer) for q in questions]
    for g in graded:
        assert "\n" not in g.prediction
        assert math.isfinite(g.gold_logprob) and g.gold_logprob < 0
        assert g.em == exact_match(g.prediction, g.gold)
        assert g.contained == contains_gold(g.prediction, g.gold)
        assert g.judge is None
    prompt = question_prompt(runtime, questions[1].question, cfg)
    [score] = runtime.score([prompt], [questions[1].answer])
    assert graded[1].gold_logprob == pytest.approx(score.mean_logprob, abs=1e-4)
    assert graded[0].as_dict()["question"] == questions[0].question


def test_answer_and_grade_passes_triples_to_the_judge(runtime):
    class EveryoneIsRight:
        def grade(self, triples):
            self.triples = list(triples)
            return [1.0] * len(self.triples)

    judge = EveryoneIsRight()
    questions = [Question("What is the capital of France?", "Paris")]
    [graded] = answer_and_grade(runtime, questions, EvalConfig(max_answer_tokens=4), judge)
    assert judge.triples == [("What is the capital of France?", "Paris", graded.prediction)]
    assert graded.judge == 1.0


@pytest.mark.parametrize(
    ("prediction", "short", "recited"),
    [
        ("Mira Okafor", 1.0, False),
        ("Mira Okafor is the chief engineer. She joined in 2019.", 1.0, False),
        # the whole passage recited: the gold answer only turns up in a later sentence
        ("Velrath Dynamics was founded in 2019. Its chief engineer is Mira Okafor.", 0.0, True),
        # one long sentence: the head is its first 12 words
        ("The company that was founded in the town of Harwick in the year 2019 has Mira Okafor",
         0.0, True),
        ("Tamber", 0.0, False),
    ],
)  # fmt: skip
def test_short_answer_counts_the_gold_answer_only_in_the_answer_head(prediction, short, recited):
    assert short_answer(prediction, "Mira Okafor") == short
    graded = Graded("q", "Mira Okafor", prediction, 0.0, 0.0,
                    contains_gold(prediction, "Mira Okafor"), -1.0, short=short)  # fmt: skip
    assert graded.recited is recited and graded.as_dict()["recited"] is recited


def test_format_question_adds_the_topic_only_when_asked_to():
    assert format_question("Who?", "Acme", EvalConfig()) == "Who?"
    assert format_question("Who?", "Acme", EvalConfig(question_topic=True)) == "Topic: Acme\nWho?"
    assert format_question("Who?", "", EvalConfig(question_topic=True)) == "Who?"
