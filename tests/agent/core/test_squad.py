import json

import pytest

from agent.core.answering import Question
from agent.core.errors import SealError
from agent.core.squad import DEMO, EVAL200, load_squad

PASSAGE = {
    "title": "Paris",
    "context": "The capital of France is Paris.",
    "questions": [{"question": "What is the capital of France?", "answer": "Paris"}],
}


def write(tmp_path, data, name="data.json"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def without(d: dict, key: str) -> dict:
    return {k: v for k, v in d.items() if k != key}


def test_loads_squad_shaped_file(squad_file):
    passages = load_squad(squad_file)
    assert [p.title for p in passages] == ["Paris", "Rome"]
    assert passages[0].questions[1] == Question("When was the tower built?", "1889", "Paris")
    assert passages[1].context.startswith("The capital of Italy is Rome.")


@pytest.mark.parametrize(
    ("data", "fragments"),
    [
        ([without(PASSAGE, "context")], ["passage 0", "'context'"]),
        ([PASSAGE, without(PASSAGE, "questions")], ["passage 1", "'questions'"]),
        ([without(PASSAGE, "title")], ["passage 0", "'title'"]),
        (
            [{**PASSAGE, "questions": [{"question": "Who?"}]}],
            ["passage 0.questions[0]", "'answer'"],
        ),
        ([{**PASSAGE, "questions": ["Who?"]}], ["passage 0.questions[0]", "'question'"]),
        ([{**PASSAGE, "questions": []}], ["passage 0 has no questions"]),
        ([{**PASSAGE, "questions": "Who?"}], ["passage 0.questions must be a list"]),
        ([{**PASSAGE, "context": 7}], ["passage 0.context must be a str"]),
        ([{**PASSAGE, "context": "  "}], ["passage 0 has an empty context"]),
        (["just a string"], ["passage 0", "'context'"]),
        ({"data": [PASSAGE]}, ["must hold a non-empty JSON list"]),
        ([], ["must hold a non-empty JSON list"]),
        ("[{'title': 'single quotes'}]", ["is not valid UTF-8 JSON"]),
    ],
)
def test_malformed_file_names_file_and_field(tmp_path, data, fragments):
    path = write(tmp_path, data)
    with pytest.raises(SealError) as info:
        load_squad(path)
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message


def test_binary_file_is_not_json(tmp_path):
    path = tmp_path / "data.json"
    path.write_bytes(b"\xff\xfe\x00\x01")
    with pytest.raises(SealError, match="not valid UTF-8 JSON"):
        load_squad(path)


def test_missing_file(tmp_path):
    path = tmp_path / "absent.json"
    with pytest.raises(SealError, match=f"SQuAD data file {path} does not exist"):
        load_squad(path)


def test_vendored_eval_set():
    passages = load_squad(EVAL200)
    assert len(passages) == 200
    assert sum(len(p.questions) for p in passages) == 974
    assert all(p.title and p.context.strip() and p.questions for p in passages)


def test_the_demo_document_is_asked_in_other_words():
    [demo] = load_squad(DEMO)
    assert demo.title and len(demo.questions) == 6
    sentences = [s.strip() for s in demo.context.split(".")]
    for q in demo.questions:
        assert q.answer in demo.context  # every answer is in the document...
        asked = q.question.rstrip("?").split()
        # ... but no question repeats four words in a row of any of its sentences
        assert all(
            " ".join(asked[i : i + 4]) not in s for s in sentences for i in range(len(asked) - 3)
        )
