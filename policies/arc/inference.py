"""Answering an ARC query: greedy answers on several augmented views, each mapped back by the
inverse augmentation, then voted (SEAL, after Akyurek et al. 2024).

Two attempts (pass@2): the two grids with the most votes (ties: the earlier view). Reported per
query: solved (the truth among the attempts), partial credit (the best attempt's share of cells
right, 0 for a wrong shape), and the gold output's log-probability per token given the task as
written (no view), so that differences show even where a small model solves nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from policies.arc.grids import Grid, Pair, cell_accuracy, format_answer, format_prompt, text_to_grid
from policies.arc.transforms import Augmentation, inference_views

if TYPE_CHECKING:  # loads torch; the type is all this module needs of it
    from agent.core.runtime import ModelRuntime


@dataclass(frozen=True)
class QueryResult:
    solved: bool
    partial: float
    gold_logprob: float  # mean per token
    attempts: tuple[Grid | None, ...]  # at most 2
    votes: tuple[int, ...]  # votes of each attempt
    views: int
    parsed: int  # views whose answer parsed and inverted to a grid
    first_answer: str  # the generation on the task as written (view 0)

    def as_dict(self) -> dict:
        return asdict(self) | {
            "attempts": [None if a is None else list(map(list, a)) for a in self.attempts]
        }


def vote(candidates: Sequence[Grid | None], attempts: int = 2) -> list[tuple[Grid, int]]:
    """The `attempts` most voted grids with their votes; ties go to the one seen first."""
    counts = Counter(c for c in candidates if c is not None)
    first = {}
    for i, c in enumerate(candidates):
        if c is not None and c not in first:
            first[c] = i
    ranked = sorted(counts, key=lambda g: (-counts[g], first[g]))
    return [(g, counts[g]) for g in ranked[:attempts]]


def view_prompt(view: Augmentation, demos: Sequence[Pair], query: Grid) -> str:
    shown = [Pair(view(p.input), view(p.output)) for p in demos]
    return format_prompt(shown, view(query))


def answer_budget(runtime: ModelRuntime, demos: Sequence[Pair], query: Grid, cap: int) -> int:
    """Tokens to generate: 1.5 x the longest demonstration output or the query input (the
    truth's size is not looked at), at most `cap`."""
    longest = max(
        runtime.count_tokens(format_answer(g)) for g in [query, *(p.output for p in demos)]
    )
    return min(cap, int(1.5 * longest) + 4)


def answer_queries(
    runtime: ModelRuntime,
    demos: Sequence[Pair],
    queries: Sequence[Pair],
    *,
    views: int,
    max_answer_tokens: int,
) -> list[QueryResult]:
    """Answer every query (input + truth) from the demonstrations; one batched greedy call."""
    chosen = inference_views(views)
    prompts = [view_prompt(v, demos, q.input) for q in queries for v in chosen]
    budget = max(answer_budget(runtime, demos, q.input, max_answer_tokens) for q in queries)
    texts = [
        t[0] for t in runtime.generate(prompts, max_new_tokens=budget, batch_size=len(prompts))
    ]
    gold = runtime.score(
        [format_prompt(demos, q.input) for q in queries], [format_answer(q.output) for q in queries]
    )
    out = []
    for i, q in enumerate(queries):
        own = texts[i * len(chosen) : (i + 1) * len(chosen)]
        back = []
        for view, text in zip(chosen, own, strict=True):
            grid = text_to_grid(text)
            back.append(None if grid is None else view.inverse(grid))
        ranked = vote(back)
        attempts = tuple(g for g, _ in ranked)
        out.append(
            QueryResult(
                solved=q.output in attempts,
                partial=max((cell_accuracy(a, q.output) for a in attempts), default=0.0),
                gold_logprob=gold[i].mean_logprob,
                attempts=attempts,
                votes=tuple(n for _, n in ranked),
                views=len(chosen),
                parsed=sum(b is not None for b in back),
                first_answer=own[0],
            )
        )
    return out
