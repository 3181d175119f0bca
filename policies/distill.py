"""Teacher self-edits for distillation: (passage, completion) pairs written by stronger models,
read from SEAL's published files, to warm-start the self-edit policy before ReST-EM.

Two shapes are read (../shared/data/squad/seal_published/, see its README):
- `.json`: a list of passages, each with `title`, `context`, `prompt` and `completions` (a list,
  or a JSON string of one, as SEAL wrote them): one pair per completion;
- `.jsonl`: one `{"prompt", "completion"}` pair per line (the pairs SEAL's ReST-EM kept).

SEAL's prompts are ours (policies/self_edit.py FORMATS): the format, title and passage are read
back from the prompt, and `seal train-policy --distill` renders the prompt again as our writer is
prompted (chat template or not). A passage of eval200 is refused: a writer is never taught on
passages it is evaluated on.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.core.errors import SealError
from agent.core.io import read_jsonl
from agent.core.squad import EVAL200, load_squad
from policies.self_edit import FORMATS

_PROMPT = re.compile(
    r"^Let's read the following passage and (?P<instruction>.+?)\n\nPassage:\n(?P<title>[^\n]*)\n"
    r"(?P<context>.*)\n\n(?P<cue>[^\n]+?)\s*$",
    re.DOTALL,
)


@dataclass(frozen=True)
class TeacherPair:
    format: str  # one of policies.self_edit.FORMATS
    title: str
    context: str
    completion: str
    source: str  # file name, for the version's provenance


def parse_seal_prompt(prompt: str) -> tuple[str, str, str]:
    """(format name, title, passage) of a self-edit prompt in SEAL's words."""
    match = _PROMPT.match(prompt)
    if match:
        for fmt in FORMATS.values():
            if fmt.instruction == match["instruction"] and fmt.cue == match["cue"].strip():
                return fmt.name, match["title"], match["context"]
    raise ValueError(f"not a self-edit prompt of a known format: {prompt[:80]!r}")


def read_teacher_pairs(paths: Sequence[Path]) -> list[TeacherPair]:
    """Every pair of every file, in order; one clear error names a file and what is wrong."""
    pairs: list[TeacherPair] = []
    for path in paths:
        try:
            found = list(_pairs_of(Path(path)))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SealError(
                f"{path}: not a file of teacher self-edits ({exc}); give SEAL's .json (passages "
                "with prompt and completions) or .jsonl ({prompt, completion} lines)"
            ) from exc
        if not found:
            raise SealError(f"{path}: no teacher self-edits in it")
        pairs += found
    _refuse_eval_passages(pairs)
    return pairs


def _pairs_of(path: Path) -> Iterable[TeacherPair]:
    if path.suffix == ".jsonl":
        for row in read_jsonl(path):
            name, title, context = parse_seal_prompt(row["prompt"])
            if row["completion"].strip():
                yield TeacherPair(name, title, context, row["completion"], path.name)
        return
    rows = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(rows, list):
        raise ValueError("expected a list of passages")
    for row in rows:
        name, _, _ = parse_seal_prompt(row["prompt"])
        completions = row["completions"]
        if isinstance(completions, str):
            completions = json.loads(completions)
        for completion in completions:
            if completion.strip():
                yield TeacherPair(name, row["title"], row["context"], completion, path.name)


def _refuse_eval_passages(pairs: Sequence[TeacherPair]) -> None:
    held_out = {" ".join(p.context.split()) for p in load_squad(EVAL200)}
    seen = [p for p in pairs if " ".join(p.context.split()) in held_out]
    if seen:
        raise SealError(
            f"{len(seen)} teacher self-edits (first: {seen[0].title!r} in {seen[0].source}) are "
            "on eval200 passages, which the writer is evaluated on; teach it on training "
            "passages only"
        )
