"""ARC grids and tasks, and the text codec the model reads and writes them in.

A grid is a tuple of rows of colours 0-9, 1 to 30 cells a side (ARC-AGI-1). The codec writes one
row per line with the digits back to back: SmolLM2's tokenizer splits digits, so a cell costs one
token and a row one more for its newline (an H x W grid: H * (W + 1) tokens). Spaces or commas
between cells would double that ("0 1 2" is 5 tokens, "012" is 3; measured with the default
model's tokenizer), and a 4-demonstration task of 10 x 10 grids already costs ~900 tokens.

A task prompt lists the demonstrations as "input:" / "output:" blocks, then the query's input and
"output:", which the answer grid completes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.core.errors import SealError
from agent.core.io import read_limited

Grid = tuple[tuple[int, ...], ...]
MAX_SIDE = 30  # ARC-AGI-1 grids are at most 30 x 30
MAX_TASK_FILE_BYTES = 50_000_000


def as_grid(rows: object) -> Grid:
    """A validated grid from nested lists; ValueError naming what is wrong."""
    if not isinstance(rows, list | tuple) or not rows:
        raise ValueError("a grid is a non-empty list of rows")
    width = None
    out = []
    for row in rows:
        if not isinstance(row, list | tuple) or not row:
            raise ValueError("every row of a grid is a non-empty list of colours")
        if width is None:
            width = len(row)
        if len(row) != width:
            raise ValueError(f"rows of different widths ({width} and {len(row)})")
        if not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 9 for c in row):
            raise ValueError("colours are integers 0-9")
        out.append(tuple(row))
    if len(out) > MAX_SIDE or width > MAX_SIDE:
        raise ValueError(f"a grid is at most {MAX_SIDE} x {MAX_SIDE}, not {len(out)} x {width}")
    return tuple(out)


def shape(grid: Grid) -> tuple[int, int]:
    return len(grid), len(grid[0])


def fits(grid: Grid) -> bool:
    h, w = shape(grid)
    return h <= MAX_SIDE and w <= MAX_SIDE


def grid_to_text(grid: Grid) -> str:
    return "\n".join("".join(str(c) for c in row) for row in grid)


def text_to_grid(text: str) -> Grid | None:
    """The grid a generation starts with (leading blank lines skipped, read up to the first line
    that is not a row of digits); None when there is none or its rows differ in width."""
    rows = []
    for line in text.lstrip("\n").split("\n"):
        line = line.strip()
        if not line or not line.isdigit() or not line.isascii():
            break
        rows.append(tuple(int(c) for c in line))
    if not rows or len({len(r) for r in rows}) != 1 or len(rows) > MAX_SIDE:
        return None
    if len(rows[0]) > MAX_SIDE:
        return None
    return tuple(rows)


@dataclass(frozen=True)
class Pair:
    input: Grid
    output: Grid


@dataclass(frozen=True)
class ArcTask:
    id: str
    train: tuple[Pair, ...]  # the demonstrations
    test: tuple[Pair, ...]  # the test inputs with their solutions

    @property
    def cells(self) -> int:
        grids = [g for p in (*self.train, *self.test) for g in (p.input, p.output)]
        return sum(h * w for h, w in map(shape, grids))


def format_prompt(demos: Sequence[Pair], query: Grid) -> str:
    """The task as text up to where the query's output grid starts."""
    blocks = [f"input:\n{grid_to_text(p.input)}\noutput:\n{grid_to_text(p.output)}" for p in demos]
    blocks.append(f"input:\n{grid_to_text(query)}\noutput:\n")
    return "\n\n".join(blocks)


def format_answer(grid: Grid) -> str:
    return grid_to_text(grid)


def cell_accuracy(prediction: Grid | None, truth: Grid) -> float:
    """Partial credit: the share of the truth's cells predicted right (0 for a wrong shape)."""
    if prediction is None or shape(prediction) != shape(truth):
        return 0.0
    cells = [
        a == b
        for pr, tr in zip(prediction, truth, strict=True)
        for a, b in zip(pr, tr, strict=True)
    ]
    return sum(cells) / len(cells)


def load_tasks(challenges: Path, solutions: Path) -> list[ArcTask]:
    """Tasks of an ARC Prize 2024 challenges file with their solutions file, in file order."""

    def read(path: Path) -> dict:
        try:
            data = json.loads(read_limited(path, MAX_TASK_FILE_BYTES, "ARC file"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SealError(f"ARC file {path} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise SealError(f"ARC file {path}: expected an object of task id -> task")
        return data

    tasks, answers = read(challenges), read(solutions)
    out = []
    for task_id, task in tasks.items():
        try:
            train = tuple(Pair(as_grid(p["input"]), as_grid(p["output"])) for p in task["train"])
            outs = answers[task_id]
            test = tuple(
                Pair(as_grid(p["input"]), as_grid(o))
                for p, o in zip(task["test"], outs, strict=True)
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SealError(f"ARC task {task_id} in {challenges} is malformed: {exc}") from exc
        if len(train) < 2:
            raise SealError(f"ARC task {task_id} has {len(train)} demonstration; at least 2 needed")
        out.append(ArcTask(task_id, train, test))
    return out
