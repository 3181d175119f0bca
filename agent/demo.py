"""`seal demo`: one document learned end to end, with closed-book answers before and after.

By default the bundled demo document (agent/core/data/demo.json): a made-up company the base
model cannot know, asked about in other words than the document's. `--index N` learns SQuAD
eval200 passage N instead; `--file` a file of your own.

setup (config, document, model) -> run (answer, self-edit, update, answer again) -> report,
ending with `correct: B/N -> A/N`: short answers (the gold answer in the answer's first sentence
or first 12 words, agent/core/answering.py) before and after, closed-book.
"""

from __future__ import annotations

import argparse
import textwrap
import time
from pathlib import Path

from agent.core.answering import Graded, Question, answer_and_grade, mean_of
from agent.core.config import SealConfig
from agent.core.errors import SealError
from agent.core.squad import DEMO, EVAL200, SquadPassage, load_squad_passage
from agent.documents import read_file
from policies.self_edit import write_self_edits

MAX_DOCUMENT_BYTES = 200_000  # a demo passage; long documents are the agent's job (`seal chat`)


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--file", type=Path, help="SQuAD-format .json or a plain .txt passage")
    ap.add_argument(
        "--index",
        type=int,
        help="which passage of a .json file (without --file: of the bundled SQuAD eval200)",
    )
    ap.add_argument("--question", action="append", default=[], help="question (.txt input)")
    ap.add_argument("--answer", action="append", default=[], help="gold answer, per --question")
    ap.add_argument("--out", type=Path, default=Path("runs/demo"), help="adapter + config go here")


def _text_passage(path: Path, questions: list[str], answers: list[str]) -> SquadPassage:
    text = read_file(path, MAX_DOCUMENT_BYTES).text
    if not questions:
        raise SealError(f"{path} is plain text: give the questions to ask with --question")
    if answers and len(answers) != len(questions):
        raise SealError("give one --answer per --question, or none")
    gold = answers or [""] * len(questions)
    qs = tuple(Question(q, a) for q, a in zip(questions, gold, strict=True))
    return SquadPassage(path.stem.replace("_", " "), " ".join(text.split()), qs)


def choose_passage(args: argparse.Namespace) -> SquadPassage:
    if args.file is None:
        return load_squad_passage(EVAL200 if args.index is not None else DEMO, args.index or 0)
    if args.file.suffix.lower() != ".json":
        return _text_passage(args.file, args.question, args.answer)
    return load_squad_passage(args.file, args.index or 0)


def _row(g0: Graded, g1: Graded, has_gold: bool) -> str:
    cut = lambda s, n: s if len(s) <= n else s[: n - 1] + "\u2026"  # noqa: E731
    line = f"  Q: {g0.question}\n"
    if has_gold:
        line += f"     gold: {g0.gold}\n"
    line += f"     before: {cut(g0.prediction, 70):<72}"
    line += f"[{_verdict(g0)}, log p(gold) {g0.gold_logprob:.2f}]\n" if has_gold else "\n"
    line += f"     after:  {cut(g1.prediction, 70):<72}"
    line += f"[{_verdict(g1)}, log p(gold) {g1.gold_logprob:.2f}]" if has_gold else ""
    return line


def _verdict(g: Graded) -> str:
    return "correct" if g.short else "recited" if g.recited else "-"


def run_demo(args: argparse.Namespace, cfg: SealConfig, home: Path) -> int:
    # Deferred: these load torch; `seal --help` and the memory commands never need it.
    from agent.core.inner_loop import train_adapter
    from agent.core.runtime import ModelRuntime

    # ---- setup
    passage = choose_passage(args)
    has_gold = all(q.answer for q in passage.questions)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    runtime = ModelRuntime.load(cfg.model, cfg.adapt)
    timings["load model"] = time.perf_counter() - start
    print(
        f"model {cfg.model.name} on {runtime.device} ({runtime.base_model.dtype}), "
        f"self-edit format '{cfg.self_edit.format}'\n"
    )
    print(f"Document: {passage.title}")
    print(textwrap.indent(textwrap.fill(passage.context, 96), "  ") + "\n")

    # ---- run
    def timed(label, fn):
        t = time.perf_counter()
        result = fn()
        timings[label] = time.perf_counter() - t
        return result

    # Without gold answers there is nothing to score; a placeholder keeps scoring well-defined.
    asked = (
        passage.questions if has_gold else [Question(q.question, "?") for q in passage.questions]
    )
    runtime.reset_adapter(cfg.adapt.seed)
    before = timed("answer before", lambda: answer_and_grade(runtime, asked, cfg.eval))
    [edit] = timed(
        "write self-edit",
        lambda: write_self_edits(
            runtime,
            passage.title,
            passage.context,
            cfg.self_edit.model_copy(update={"num_candidates": 1}),
            asking=cfg.eval,
        ),
    )
    fallback = ", none usable: fell back to the passage alone" if edit.fallback else ""
    print(f"Self-edit ({len(edit.items)} items{fallback}):")
    for item in edit.items[:12]:
        print(textwrap.fill(item, 96, initial_indent="  - ", subsequent_indent="    "))
    if len(edit.items) > 12:
        print(f"  ... and {len(edit.items) - 12} more")
    log = timed("train LoRA", lambda: train_adapter(runtime, edit.sequences, cfg.adapt))
    after = timed("answer after", lambda: answer_and_grade(runtime, asked, cfg.eval))

    # ---- report
    print(
        f"\nTrained on {log.n_sequences} sequences, {log.tokens} tokens, {log.steps} steps: "
        f"loss {log.losses[0]:.2f} -> {log.losses[-1]:.2f} ({log.tokens_per_second:.0f} tok/s)\n"
    )
    print("Closed-book answers, before -> after the update:")
    for g0, g1 in zip(before, after, strict=True):
        print(_row(g0, g1, has_gold))
    if has_gold:
        n = len(before)
        c0, c1 = sum(g.contained for g in before), sum(g.contained for g in after)
        lp0, lp1 = mean_of(before, "gold_logprob"), mean_of(after, "gold_logprob")
        print(
            f"\ngold contained anywhere in the answer: {c0:.0f}/{n} -> {c1:.0f}/{n}; "
            f"mean log p(gold) per token: {lp0:.2f} -> {lp1:.2f}"
        )
    folder = runtime.save_adapter(args.out / "adapter")
    cfg.save(args.out / "config.json")
    total = sum(v for k, v in timings.items() if k != "load model")
    print(
        "\ntimings: "
        + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())
        + f"; inner loop {total:.1f} s"
    )
    print(f"adapter saved to {folder} (resolved config in {args.out / 'config.json'})")
    if has_gold:
        b, a = sum(g.short for g in before), sum(g.short for g in after)
        print(f"correct: {b:.0f}/{len(before)} -> {a:.0f}/{len(after)}")
    return 0
