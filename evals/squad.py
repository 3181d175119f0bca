"""SQuAD-format passages and teacher self-edit files, validated with errors that name the field."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from agent.errors import SealError
from evals.grading import Question

DATA_DIR = Path(__file__).resolve().parent / "data"
EVAL200 = DATA_DIR / "squad_eval200.json"
TEACHERS = {
    "gpt41": DATA_DIR / "selfedits_gpt41_eval200.json",
    "seal-iter2": DATA_DIR / "selfedits_seal_iter2_eval200.json",
}


@dataclass(frozen=True)
class SquadPassage:
    title: str
    context: str
    questions: tuple[Question, ...]


def _load_json_list(path: Path, what: str) -> list:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SealError(f"{what} file {path} does not exist") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SealError(f"{what} file {path} is not valid UTF-8 JSON: {exc}") from None
    if not isinstance(data, list) or not data:
        raise SealError(f"{what} file {path} must hold a non-empty JSON list of passages")
    return data


def _field(path: Path, item: object, key: str, where: str, kind: type = str):
    if not isinstance(item, dict) or key not in item:
        raise SealError(f"{path}: {where} has no {key!r} field")
    value = item[key]
    if not isinstance(value, kind):
        raise SealError(f"{path}: {where}.{key} must be a {kind.__name__}")
    return value


def load_squad(path: Path) -> list[SquadPassage]:
    """Passages shaped `[{"title", "context", "questions": [{"question", "answer"}]}]`."""
    passages = []
    for i, item in enumerate(_load_json_list(path, "SQuAD data")):
        where = f"passage {i}"
        context = _field(path, item, "context", where)
        if not context.strip():
            raise SealError(f"{path}: {where} has an empty context")
        questions = []
        for j, q in enumerate(_field(path, item, "questions", where, list)):
            qwhere = f"{where}.questions[{j}]"
            questions.append(
                Question(_field(path, q, "question", qwhere), _field(path, q, "answer", qwhere))
            )
        if not questions:
            raise SealError(f"{path}: {where} has no questions")
        passages.append(SquadPassage(_field(path, item, "title", where), context, tuple(questions)))
    return passages


def load_squad_passage(path: Path, index: int) -> SquadPassage:
    """Passage `index` of a SQuAD-format file (the `--index` of the commands that take one)."""
    passages = load_squad(path)
    if not 0 <= index < len(passages):
        raise SealError(f"--index {index} is out of range: {path} has {len(passages)} passages")
    return passages[index]


def resolve_teacher(spec: str) -> Path:
    """`gpt41`, `seal-iter2` (vendored SEAL self-edits) or a path to such a file."""
    return TEACHERS.get(spec, Path(spec))


def load_teacher(path: Path, passages: list[SquadPassage]) -> list[list[str]]:
    """Completions per passage from a file shaped like SEAL's selfedits_*_eval200.json.

    Matched by context so that a reordered or partial file cannot pair the wrong self-edits.
    """
    by_context: dict[str, list[str]] = {}
    for i, item in enumerate(_load_json_list(path, "teacher self-edit")):
        completions = _field(path, item, "completions", f"entry {i}", list)
        if not all(isinstance(c, str) for c in completions):
            raise SealError(f"{path}: entry {i}.completions must be a list of strings")
        by_context[_field(path, item, "context", f"entry {i}")] = completions
    missing = [i for i, p in enumerate(passages) if not by_context.get(p.context)]
    if missing:
        raise SealError(
            f"{path} has no completions for {len(missing)} of the {len(passages)} passages "
            f"(first: passage {missing[0]}); it must cover the --data file"
        )
    return [by_context[p.context] for p in passages]
