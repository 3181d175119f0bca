"""Facts stated in conversation stick: a benchmark after adaptible's protocol.

Five short made-up facts (an office city, a project code name, a person's role, a date, a number)
are stated one by one in a chat, through the same graph as `seal chat` (statement detection,
learning gate, self-edit, retention-gated update). Then each fact is asked closed-book in four
phrasings that are not the statement's words, and 20 control questions that the model answered
correctly before must still be answered correctly. Graded by the short-answer score (the gold
answer in the answer's first sentence or first 12 words), so reciting the statement does not pass.

    HF_HUB_OFFLINE=1 .venv/bin/python evals/facts.py --out runs/facts

Writes facts.json ({"learned", "total", "controls_kept", "controls_total", "seconds_per_fact",
...details}) to --out.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from langchain_core.messages import HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.runtime import Runtime

from agent.core.answering import Graded, Question, answer_and_grade
from agent.core.config import SealConfig, add_config_arguments, config_from_args
from agent.core.errors import SealError, run_cli
from agent.core.io import write_atomic
from agent.graph import AgentContext, build_graph
from agent.graph.graph import turn
from agent.graph.nodes import retrieve
from agent.state_model import load_runtime
from policies.routing import answering_weights, answers_with_adapter
from stores.state import State


@dataclass(frozen=True)
class Fact:
    statement: str
    answer: str
    phrasings: tuple[str, ...]  # asked after learning; none repeats the statement's wording


FACTS = (
    Fact(
        "Our office moved to Lyon.",
        "Lyon",
        (
            "Where is our office now?",
            "Which city is our office in?",
            "Where did our office move to?",
            "In what city is our office located?",
        ),
    ),
    Fact(
        "The project's code name is Bluefin.",
        "Bluefin",
        (
            "What is the project's code name?",
            "What code name does the project have?",
            "What is the code name of the project?",
            "Which code name was given to the project?",
        ),
    ),
    Fact(
        "Mira Okafor is our chief engineer.",
        "chief engineer",
        (
            "What is Mira Okafor's role?",
            "What is Mira Okafor's job?",
            "What position does Mira Okafor hold?",
            "What does Mira Okafor do for us?",
        ),
    ),
    Fact(
        "The product launch is on 14 May.",
        "14 May",
        (
            "When is the product launch?",
            "On what date is the launch?",
            "What is the date of the product launch?",
            "When do we launch the product?",
        ),
    ),
    Fact(
        "Our team has 37 members.",
        "37",
        (
            "How many members does our team have?",
            "How many people are in our team?",
            "What is the size of our team?",
            "How big is our team?",
        ),
    ),
)

# Candidates for the controls: general knowledge a small model may know. The first
# CONTROLS of them the model answers correctly before learning are the controls.
CONTROL_CANDIDATES = (
    ("What is the capital of France?", "Paris"),
    ("What is the capital of Italy?", "Rome"),
    ("What is the capital of Germany?", "Berlin"),
    ("What is the capital of Spain?", "Madrid"),
    ("What is the capital of Japan?", "Tokyo"),
    ("What is the capital of England?", "London"),
    ("What is the capital of Russia?", "Moscow"),
    ("What is the capital of China?", "Beijing"),
    ("What is the capital of Egypt?", "Cairo"),
    ("What is the capital of Greece?", "Athens"),
    ("Who wrote Romeo and Juliet?", "Shakespeare"),
    ("What planet do we live on?", "Earth"),
    ("What is the largest ocean on Earth?", "Pacific"),
    ("What is the largest planet in the solar system?", "Jupiter"),
    ("What is the tallest mountain in the world?", "Everest"),
    ("What do bees make?", "honey"),
    ("Which animal is known as the king of the jungle?", "lion"),
    ("What is the longest river in Africa?", "Nile"),
    ("In which country are the pyramids of Giza?", "Egypt"),
    ("What language is spoken in Brazil?", "Portuguese"),
    ("What is the currency of Japan?", "yen"),
    ("Who was the first president of the United States?", "Washington"),
    ("What is the chemical symbol for gold?", "Au"),
    ("What color is the sky on a clear day?", "blue"),
    ("What is frozen water called?", "ice"),
    ("Which planet is known as the Red Planet?", "Mars"),
    ("What is the closest star to the Earth?", "Sun"),
    ("What gas do plants absorb from the air?", "carbon dioxide"),
    ("Who painted the Mona Lisa?", "Leonardo"),
    ("What is the capital of Canada?", "Ottawa"),
    ("What is the capital of Australia?", "Canberra"),
    ("What is the largest country in the world?", "Russia"),
    ("How many legs does a spider have?", "eight"),
    ("What is the main language of Mexico?", "Spanish"),
    ("What animal says moo?", "cow"),
    ("What is the opposite of hot?", "cold"),
)
CONTROLS = 20


def choose_controls(runtime, cfg: SealConfig, n: int = CONTROLS) -> list[Question]:
    """The first `n` candidates the model (before learning) answers correctly, short-answer."""
    candidates = [Question(q, a) for q, a in CONTROL_CANDIDATES]
    graded = answer_and_grade(runtime, candidates, cfg.eval)
    return [q for q, g in zip(candidates, graded, strict=True) if g.short][:n]


def ask_as_chat(
    context: AgentContext, questions: list[Question]
) -> tuple[list[Graded], list[bool]]:
    """Closed-book answers as `seal chat` gives them: each question with the knowledge adapter
    if something learned is near it, else with the base model (policies/routing.py); the graded
    answers and which ones the adapter gave."""

    def near(question: Question) -> list:  # the chat's retrieve node
        found = retrieve({"messages": [HumanMessage(question.question)]}, Runtime(context=context))
        return found["passages"]

    routed = [
        answers_with_adapter(near(q), context.cfg.chat.adapter_min_similarity) for q in questions
    ]
    graded: list[Graded | None] = [None] * len(questions)
    for adapter in (True, False):
        group = [i for i, r in enumerate(routed) if r is adapter]
        if not group:
            continue
        with answering_weights(context.runtime, adapter):
            answers = answer_and_grade(
                context.runtime, [questions[i] for i in group], context.cfg.eval
            )
        for i, g in zip(group, answers, strict=True):
            graded[i] = g
    return graded, routed


def run(runtime, state: State, cfg: SealConfig, facts=FACTS, controls: int = CONTROLS) -> dict:
    """State each fact through the chat graph, then ask every phrasing and control closed-book."""
    asked = [Question(p, f.answer) for f in facts for p in f.phrasings]
    before = answer_and_grade(runtime, asked, cfg.eval)
    chosen = choose_controls(runtime, cfg, controls)
    graph = build_graph(InMemorySaver())
    context = AgentContext(runtime, state, cfg)
    config = {"configurable": {"thread_id": "facts"}}
    turns = []
    for fact in facts:
        start = time.perf_counter()
        values = graph.invoke(
            turn("ask", messages=[HumanMessage(fact.statement)], defer_learning=False),
            config,
            context=context,
        )
        update = values.get("update") or {}
        gate = (values.get("gate") or [{}])[0]
        turns.append(
            {
                "statement": fact.statement,
                "seconds": round(time.perf_counter() - start, 1),
                "gate": gate.get("decision"),
                "decision": update.get("decision"),
                "reason": update.get("reason") or gate.get("reason"),
            }
        )
        print(f"  {fact.statement!r}: {turns[-1]['decision']} ({turns[-1]['seconds']} s)")
    after, routed = ask_as_chat(context, asked)
    kept, kept_routed = ask_as_chat(context, chosen)
    # the same adapter asked everything (chat.adapter_min_similarity 0): what routing changes
    everything = answer_and_grade(runtime, asked + chosen, cfg.eval)
    return {
        "learned": int(sum(g.short for g in after)),
        "total": len(asked),
        "learned_before": int(sum(g.short for g in before)),
        "contained_after": int(sum(g.contained for g in after)),
        "controls_kept": int(sum(g.short for g in kept)),
        "unrouted": {
            "learned": int(sum(g.short for g in everything[: len(asked)])),
            "controls_kept": int(sum(g.short for g in everything[len(asked) :])),
        },
        "controls_total": len(chosen),
        "seconds_per_fact": round(sum(t["seconds"] for t in turns) / len(turns), 1),
        "turns": turns,
        "answers": [
            {
                "question": g.question,
                "gold": g.gold,
                "before": b.prediction,
                "after": g.prediction,
                "short": g.short,
                "recited": g.recited,
                "knowledge_adapter": r,
            }
            for b, g, r in zip(before, after, routed, strict=True)
        ],  # fmt: skip
        "controls": [
            {"question": g.question, "after": g.prediction, "kept": g.short, "knowledge_adapter": r}
            for g, r in zip(kept, kept_routed, strict=True)
        ],
    }


def report(result: dict) -> str:
    lines = [
        f"facts learned (short answers): {result['learned']}/{result['total']} phrasings "
        f"(before: {result['learned_before']}/{result['total']}); controls kept "
        f"{result['controls_kept']}/{result['controls_total']}; "
        f"{result['seconds_per_fact']} s per fact; with the adapter answering everything: "
        f"{result['unrouted']['learned']} learned, {result['unrouted']['controls_kept']} kept"
    ]
    for a in result["answers"]:
        mark = "ok" if a["short"] else "recited" if a["recited"] else "-"
        base = "" if a.get("knowledge_adapter", True) else " (base model)"
        lines.append(f"  [{mark:>7}] {a['question']}  ->  {a['after'][:70]}{base}")
    return "\n".join(lines)


def pooled(runs: list[dict]) -> dict:
    """The runs of several seeds together: counts summed, seconds per fact averaged."""
    total = lambda key: sum(r[key] for r in runs)  # noqa: E731
    return {
        "learned": total("learned"),
        "total": total("total"),
        "learned_before": total("learned_before"),
        "contained_after": total("contained_after"),
        "controls_kept": total("controls_kept"),
        "controls_total": total("controls_total"),
        "seconds_per_fact": round(sum(r["seconds_per_fact"] for r in runs) / len(runs), 1),
        "unrouted": {
            key: sum(r["unrouted"][key] for r in runs) for key in ("learned", "controls_kept")
        },
        "per_seed": [
            {k: r[k] for k in ("seed", "learned", "total", "controls_kept", "controls_total")}
            for r in runs
        ],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("runs/facts"))
    ap.add_argument(
        "--seeds",
        type=int,
        default=3,
        help="independent runs (adapt.seed 0..N-1, each on a fresh state), pooled: one run "
        "moves the counts by several facts",
    )
    add_config_arguments(ap)
    args = ap.parse_args(argv)
    if args.seeds < 1:
        raise SealError(f"--seeds {args.seeds}: run at least one seed")
    cfg = config_from_args(args)
    args.out.mkdir(parents=True, exist_ok=True)
    # what a seed's result depends on, besides its seed (threads and paths do not count)
    settings = cfg.model_dump(
        mode="json",
        exclude={"model": {"threads", "cache_dir", "allow_download"}, "adapt": {"seed"}},
    )
    runs = []
    for seed in range(args.seeds):
        path = args.out / f"seed{seed}.json"  # kept: a rerun resumes at the next seed
        if path.exists():
            saved = json.loads(path.read_text(encoding="utf-8"))
            if saved.get("settings", settings) != settings:
                raise SealError(
                    f"{path} was run with other settings; use another --out, or delete it"
                )
            runs.append(saved)
            continue
        seeded = cfg.model_copy(update={"adapt": cfg.adapt.model_copy(update={"seed": seed})})
        home = Path(tempfile.mkdtemp(prefix="seal-facts-"))
        try:
            with State.open(
                home, near_duplicate_similarity=cfg.store.near_duplicate_similarity
            ) as st:
                runtime = load_runtime(st, seeded)
                result = {"seed": seed, **run(runtime, st, seeded), "settings": settings}
        finally:
            shutil.rmtree(home, ignore_errors=True)
        write_atomic(path, json.dumps(result, indent=2) + "\n")
        print(f"seed {seed}: " + report(result))
        runs.append(result)
    result = {**pooled(runs), "runs": runs, "config": cfg.model_dump(mode="json")}
    write_atomic(args.out / "facts.json", json.dumps(result, indent=2) + "\n")
    per_seed = "; ".join(f"{r['learned']}, {r['controls_kept']}" for r in runs)
    print(
        f"{args.seeds} seeds: facts learned {result['learned']}/{result['total']} phrasings, "
        f"controls kept {result['controls_kept']}/{result['controls_total']} "
        f"(learned, kept per seed: {per_seed})"
    )
    print(f"wrote {args.out / 'facts.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
