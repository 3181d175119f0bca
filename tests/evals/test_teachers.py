import json

import pytest

from agent.core.errors import SealError
from agent.core.squad import EVAL200, load_squad
from evals.teachers import TEACHERS, load_teacher, resolve_teacher


def write(tmp_path, data, name="data.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_vendored_teachers_cover_the_eval_set():
    passages = load_squad(EVAL200)[:3]
    for spec in TEACHERS:
        completions = load_teacher(resolve_teacher(spec), passages)
        assert len(completions) == 3 and all(completions)


def test_resolve_teacher():
    assert resolve_teacher("gpt41") == TEACHERS["gpt41"]
    assert str(resolve_teacher("my/teacher.json")) == "my/teacher.json"


def test_teacher_is_matched_by_context_not_order(tmp_path, squad_file):
    passages = load_squad(squad_file)
    teacher = [
        {"title": p.title, "context": p.context, "completions": [f"1. about {p.title}"]}
        for p in reversed(passages)
    ]
    teacher.append({"context": "Unrelated passage.", "completions": ["1. unrelated"]})
    path = write(tmp_path, teacher, "teacher.json")
    assert load_teacher(path, passages) == [["1. about Paris"], ["1. about Rome"]]


def test_teacher_missing_a_passage(tmp_path, squad_file):
    passages = load_squad(squad_file)
    path = write(tmp_path, [{"context": passages[0].context, "completions": ["1. x"]}], "t.json")
    with pytest.raises(SealError, match="no completions for 1 of the 2 passages") as info:
        load_teacher(path, passages)
    assert "passage 1" in str(info.value) and str(path) in str(info.value)


def test_teacher_with_empty_completions_counts_as_missing(tmp_path, squad_file):
    passages = load_squad(squad_file)
    path = write(tmp_path, [{"context": p.context, "completions": []} for p in passages], "t.json")
    with pytest.raises(SealError, match="no completions for 2 of the 2 passages"):
        load_teacher(path, passages)


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        ({"context": "c"}, "entry 0 has no 'completions' field"),
        ({"completions": ["x"]}, "entry 0 has no 'context' field"),
        ({"context": "c", "completions": [1, 2]}, "entry 0.completions must be a list of strings"),
    ],
)
def test_malformed_teacher_file(tmp_path, squad_file, entry, fragment):
    path = write(tmp_path, [entry], "t.json")
    with pytest.raises(SealError, match=fragment.replace("[", r"\[").replace(".", r"\.")):
        load_teacher(path, load_squad(squad_file))
