"""Test-time training on an ARC task: leave-out tasks from the demonstrations, augmented as a
config chooses, trained through the project's inner loop (agent/core/inner_loop.py), then the
queries answered (inference.py).

A leave-one-out task holds one demonstration out as its query and keeps the others as its
demonstrations (n tasks from n demonstrations); with `max_held_out = 2` (and at least three
demonstrations), leave-two-out tasks add one per ordered pair (i, j): i is the query, j is left out
as well (n (n - 1) more). Each chosen augmentation is applied to every grid of every leave-out task
(skipped where a grid would pass 30 x 30), with a random colour permutation and demonstration
order on top; the unaugmented tasks come first, and the cap keeps them and samples the rest.
`train_using_output_tokens` trains (prompt, answer) pairs on the answer only; the other strategy
trains the whole text. Differences from SEAL's recipe: no cosine schedule (the inner loop's AdamW
runs at a constant rate) and sequences packed per step instead of padded.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from itertools import permutations

from agent.core.config import SealConfig
from agent.core.inner_loop import train_adapter
from policies.arc.grids import Pair, format_answer, format_prompt
from policies.arc.inference import QueryResult, answer_queries
from policies.arc.self_edit import ArcSelfEdit, parse_self_edit
from policies.arc.settings import ArcSettings
from policies.arc.transforms import Augmentation, augmentations, colour_permutation

LeaveOut = tuple[tuple[Pair, ...], Pair]  # (demonstrations, query)


def leave_out_tasks(demos: Sequence[Pair], max_held_out: int = 1) -> list[LeaveOut]:
    """Leave-one-out tasks, then (max_held_out = 2, three or more demonstrations) leave-two-out."""
    n = len(demos)
    if n < 2:
        return []
    out = [(tuple(d for k, d in enumerate(demos) if k != i), demos[i]) for i in range(n)]
    if max_held_out >= 2 and n >= 3:
        for i, j in permutations(range(n), 2):
            out.append((tuple(d for k, d in enumerate(demos) if k not in (i, j)), demos[i]))
    return out


@dataclass(frozen=True)
class Example:
    prompt: str
    answer: str
    view: str  # the augmentation's name


def _augment(task: LeaveOut, aug: Augmentation, rng: random.Random) -> LeaveOut | None:
    demos, query = task
    grids = [g for p in (*demos, query) for g in (p.input, p.output)]
    if not all(aug.fits(g) for g in grids):
        return None
    full = aug.then(colour_permutation(rng))
    shown = [Pair(full(p.input), full(p.output)) for p in demos]
    rng.shuffle(shown)
    return tuple(shown), Pair(full(query.input), full(query.output))


def build_examples(
    demos: Sequence[Pair],
    edit: ArcSelfEdit,
    settings: ArcSettings,
    seed: int,
    count_tokens: Callable[[str], int],
) -> list[Example]:
    """The config's training examples (module docstring), within the cap and the length limit."""
    rng = random.Random(seed)
    tasks = leave_out_tasks(demos, settings.max_held_out)
    plain = [
        Example(format_prompt(d, q.input), format_answer(q.output), "identity") for d, q in tasks
    ]
    augmented = []
    for aug in augmentations(set(edit.families), rng):
        for task in tasks:
            done = _augment(task, aug, rng)
            if done is not None:
                d, q = done
                augmented.append(
                    Example(format_prompt(d, q.input), format_answer(q.output), aug.name)
                )
    room = max(0, settings.max_examples - len(plain))
    chosen = plain[: settings.max_examples] + rng.sample(augmented, min(room, len(augmented)))
    return [e for e in chosen if count_tokens(e.prompt + e.answer) < settings.max_seq_tokens]


@dataclass(frozen=True)
class Plan:
    sequences: list  # the inner loop's training sequences (texts or (prompt, answer) pairs)
    steps: int
    examples: int
    views: dict[str, int] = field(default_factory=dict)  # examples per augmentation
    refused: str | None = None


def plan(
    demos: Sequence[Pair],
    edit: ArcSelfEdit,
    settings: ArcSettings,
    batch_size: int,
    seed: int,
    count_tokens: Callable[[str], int],
) -> Plan:
    """The training set and its optimizer steps; refused when it is empty or over the budget."""
    examples = build_examples(demos, edit, settings, seed, count_tokens)
    steps = edit.epochs * math.ceil(len(examples) / batch_size)
    views: dict[str, int] = {}
    for e in examples:
        views[e.view] = views.get(e.view, 0) + 1
    sequences = [
        [e.prompt, e.answer] if edit.output_only else e.prompt + e.answer for e in examples
    ]
    refused = None
    if not examples:
        refused = f"no training example fits {settings.max_seq_tokens} tokens"
    elif steps > settings.step_budget:
        refused = f"needs {steps} optimizer steps, over the step budget of {settings.step_budget}"
    return Plan(sequences, steps, len(examples), views, refused)


@dataclass(frozen=True)
class ArcResult:
    key: str
    refused: str | None  # why the config trained nothing (None: it trained, or no config)
    trained: bool
    steps: int
    examples: int
    train_seconds: float
    final_loss: float | None
    queries: tuple[QueryResult, ...]
    config: dict | None = None  # the parsed config (SEAL's JSON shape)

    @property
    def solved(self) -> float:
        """1 when every query is solved (ARC scores a task whole)."""
        return float(all(q.solved for q in self.queries))

    @property
    def partial(self) -> float:
        return sum(q.partial for q in self.queries) / len(self.queries)

    @property
    def gold_logprob(self) -> float:
        return sum(q.gold_logprob for q in self.queries) / len(self.queries)

    @classmethod
    def from_dict(cls, d: dict) -> ArcResult:
        """Back from `as_dict` (a baseline read from a run's log)."""
        queries = tuple(
            QueryResult(
                **{k: v for k, v in q.items() if k not in ("attempts", "votes")},
                attempts=tuple(None if a is None else tuple(map(tuple, a)) for a in q["attempts"]),
                votes=tuple(q["votes"]),
            )
            for q in d["queries"]
        )
        fields = ("key", "refused", "trained", "steps", "examples", "train_seconds", "final_loss")
        return cls(**{k: d[k] for k in fields}, queries=queries, config=d.get("config"))

    def as_dict(self) -> dict:
        d = asdict(self)
        d["queries"] = [q.as_dict() for q in self.queries]
        d.update(solved=self.solved, partial=round(self.partial, 5))
        d["gold_logprob"] = round(self.gold_logprob, 5)
        return d


@dataclass(frozen=True)
class ArcTTTTask:
    """One inner loop for an executor (policies/executor.py): train on `demos` as the config in
    `raw` says (None: no config, the model as it is), then answer `queries`."""

    key: str
    demos: tuple[Pair, ...]
    queries: tuple[Pair, ...]
    raw: str | None
    settings: ArcSettings
    seed: int
    views: int

    def run(self, runtime, cfg: SealConfig) -> ArcResult:
        runtime.reset_adapter(cfg.adapt.seed)  # the base model, whatever the last task left
        refused, trained, steps, examples, seconds, loss, config = (
            None,
            False,
            0,
            0,
            0.0,
            None,
            None,
        )
        if self.raw is not None:
            parsed = parse_self_edit(self.raw, self.settings)
            refused = parsed.reason
            if parsed.edit is not None:
                config = parsed.edit
                p = plan(
                    self.demos,
                    parsed.edit,
                    self.settings,
                    cfg.adapt.batch_size,
                    self.seed,
                    runtime.count_tokens,
                )
                steps, examples, refused = p.steps, p.examples, p.refused
                if refused is None:
                    adapt = cfg.adapt.model_copy(
                        update={
                            "learning_rate": parsed.edit.learning_rate,
                            "epochs": parsed.edit.epochs,
                            "max_seq_tokens": self.settings.max_seq_tokens,
                            "seed": self.seed,
                        }
                    )
                    log = train_adapter(runtime, p.sequences, adapt)
                    trained, seconds, loss = True, log.seconds, log.losses[-1]
        queries = answer_queries(
            runtime,
            self.demos,
            self.queries,
            views=self.views,
            max_answer_tokens=self.settings.max_answer_tokens,
        )
        return ArcResult(
            self.key,
            refused,
            trained,
            steps,
            examples,
            round(seconds, 3),
            loss,
            tuple(queries),
            None if config is None else json.loads(config.as_json()),
        )
