"""Teacher self-edit files: SEAL's published completions for the eval200 passages (data/NOTICE.md),
or any file of that shape, matched to passages by their context."""

from __future__ import annotations

from pathlib import Path

from agent.core.errors import SealError
from agent.core.squad import SquadPassage, json_field, load_json_list

DATA_DIR = Path(__file__).resolve().parent / "data"
TEACHERS = {
    "gpt41": DATA_DIR / "selfedits_gpt41_eval200.json",
    "seal-iter2": DATA_DIR / "selfedits_seal_iter2_eval200.json",
}


def resolve_teacher(spec: str) -> Path:
    """`gpt41`, `seal-iter2` (vendored SEAL self-edits) or a path to such a file."""
    return TEACHERS.get(spec, Path(spec))


def load_teacher(path: Path, passages: list[SquadPassage]) -> list[list[str]]:
    """Completions per passage from a file shaped like SEAL's selfedits_*_eval200.json.

    Matched by context so that a reordered or partial file cannot pair the wrong self-edits.
    """
    by_context: dict[str, list[str]] = {}
    for i, item in enumerate(load_json_list(path, "teacher self-edit")):
        completions = json_field(path, item, "completions", f"entry {i}", list)
        if not all(isinstance(c, str) for c in completions):
            raise SealError(f"{path}: entry {i}.completions must be a list of strings")
        by_context[json_field(path, item, "context", f"entry {i}")] = completions
    missing = [i for i, p in enumerate(passages) if not by_context.get(p.context)]
    if missing:
        raise SealError(
            f"{path} has no completions for {len(missing)} of the {len(passages)} passages "
            f"(first: passage {missing[0]}); it must cover the --data file"
        )
    return [by_context[p.context] for p in passages]
