"""SQuAD-format passages (the bundled eval200 set, or any file of that shape), validated with
errors that name the field."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from agent.core.answering import Question
from agent.core.errors import SealError

DATA_DIR = Path(__file__).resolve().parent / "data"
EVAL200 = DATA_DIR / "squad_eval200.json"  # SEAL's 200 evaluation passages (data/NOTICE.md)
DEMO = DATA_DIR / "demo.json"  # the made-up document `seal demo` learns (data/NOTICE.md)


@dataclass(frozen=True)
class SquadPassage:
    title: str
    context: str
    questions: tuple[Question, ...]


def load_json_list(path: Path, what: str) -> list:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SealError(f"{what} file {path} does not exist") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SealError(f"{what} file {path} is not valid UTF-8 JSON: {exc}") from None
    if not isinstance(data, list) or not data:
        raise SealError(f"{what} file {path} must hold a non-empty JSON list of passages")
    return data


def json_field(path: Path, item: object, key: str, where: str, kind: type = str):
    if not isinstance(item, dict) or key not in item:
        raise SealError(f"{path}: {where} has no {key!r} field")
    value = item[key]
    if not isinstance(value, kind):
        raise SealError(f"{path}: {where}.{key} must be a {kind.__name__}")
    return value


def load_squad(path: Path) -> list[SquadPassage]:
    """Passages shaped `[{"title", "context", "questions": [{"question", "answer"}]}]`."""
    passages = []
    for i, item in enumerate(load_json_list(path, "SQuAD data")):
        where = f"passage {i}"
        context = json_field(path, item, "context", where)
        if not context.strip():
            raise SealError(f"{path}: {where} has an empty context")
        title = json_field(path, item, "title", where)
        questions = []
        for j, q in enumerate(json_field(path, item, "questions", where, list)):
            qwhere = f"{where}.questions[{j}]"
            question = json_field(path, q, "question", qwhere)
            questions.append(Question(question, json_field(path, q, "answer", qwhere), title))
        if not questions:
            raise SealError(f"{path}: {where} has no questions")
        passages.append(SquadPassage(title, context, tuple(questions)))
    return passages


def load_squad_passage(path: Path, index: int) -> SquadPassage:
    """Passage `index` of a SQuAD-format file (the `--index` of the commands that take one)."""
    passages = load_squad(path)
    if not 0 <= index < len(passages):
        raise SealError(f"--index {index} is out of range: {path} has {len(passages)} passages")
    return passages[index]
