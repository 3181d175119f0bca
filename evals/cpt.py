"""SEAL's continued-pretraining setting (arXiv 2506.10943, section 4.2): many passages at once.

The first N passages are learned together: per condition, ONE fresh adapter is trained on the
training sequences of all N passages pooled (the inner loop shuffles them together), with the
inner loop and config of evals/knowledge.py's single-passage protocol; then every question of
every passage is answered closed-book and graded as knowledge.py grades. It is what `seal ingest`
does with a batch of documents, without replay or the retention gate.

    python evals/cpt.py --passages 50 --out runs/cpt \
        --conditions base,passage,qa-spans,implications,teacher:gpt41,teacher:seal-iter2

Conditions are knowledge.py's: base, passage, a format the model writes (qa-spans, implications,
...), FORMAT@POLICY (a policy version of `seal train-policy`: 0 = the raw model, the distilled
writer, ReST-EM rounds) and teacher:X. A passage's self-edit is the one knowledge.py would train
on for it alone (same prompt and seed). Writes to --out: self_edits.jsonl (each passage's
self-edit and training sequences, per condition, so an interrupted condition does not write them
again), conditions.jsonl (one line per finished condition: training log and every graded answer),
results.json, results.md, cpt.json (the shape of results/writer/cpt.json) and config.json; a
rerun skips finished conditions. Intervals are 95% bootstrap over passages: a passage's questions
are resampled together, as in knowledge.py.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

from tqdm import tqdm

from agent.core.answering import answer_and_grade
from agent.core.config import AdaptConfig, SealConfig, add_config_arguments, config_from_args
from agent.core.errors import SealError, run_cli
from agent.core.inner_loop import TrainingSequence, TrainLog, train_adapter
from agent.core.io import append_jsonl, read_jsonl, write_atomic
from agent.core.runtime import ModelRuntime
from agent.core.squad import EVAL200, SquadPassage, load_squad
from evals.knowledge import (
    Condition,
    build_judge,
    condition_self_edit,
    headline,
    load_teachers,
    markdown_table,
    open_run,
    result_settings,
    run_conditions,
    summarize,
)

DEFAULT_CONDITIONS = "base,passage,qa-spans,implications,teacher:gpt41,teacher:seal-iter2"
# The reference rows of results/writer/cpt.json (issue 16): what the trained writer must beat.
PASSAGE, TEACHER = "passage", "teacher:gpt41"


def select_passages(data: Path, n: int) -> list[SquadPassage]:
    """The first `n` passages of `data`; all of them must be there."""
    if n < 1:
        raise SealError(f"--passages {n}: learn at least 1 passage")
    passages = load_squad(data)
    if n > len(passages):
        raise SealError(f"--passages {n}: {data} has only {len(passages)} passages")
    return passages[:n]


def check_named(flag: str, name: str | None, conditions: list[Condition]) -> None:
    names = [c.name for c in conditions]
    if name is not None and name not in names:
        raise SealError(f"{flag} {name!r} is not one of --conditions ({', '.join(names)})")


# ----------------------------------------------------------------------------- one condition
def passage_self_edits(
    runtime: ModelRuntime,
    cfg: SealConfig,
    passages: list[SquadPassage],
    cond: Condition,
    teacher: list[list[str]] | None,
    seed: int,
    path: Path,
) -> list[dict]:
    """Each passage's self-edit for `cond`, read from `path` where an earlier run wrote it, else
    written now and appended there (with its training sequences, what the adapter is fit to)."""
    saved = {r["index"]: r for r in read_jsonl(path) if r["condition"] == cond.name}
    bar = tqdm(passages, desc=f"{cond.name}: self-edits", unit="passage", dynamic_ncols=True)
    for i, p in enumerate(bar):
        if i in saved:
            continue
        start = time.perf_counter()
        completions = teacher[i] if teacher is not None else None
        edit = condition_self_edit(runtime, cfg, p, cond, completions, seed)
        saved[i] = {
            "condition": cond.name,
            "index": i,
            "title": p.title,
            "seconds": round(time.perf_counter() - start, 3),
            "self_edit": edit.as_dict(),
            "sequences": edit.sequences,
        }
        append_jsonl(path, saved[i])
    return [saved[i] for i in range(len(passages))]


def train_pooled(
    runtime: ModelRuntime, sequences: list[TrainingSequence], adapt: AdaptConfig, name: str
) -> TrainLog:
    """One fresh adapter on all passages' sequences, with a progress bar over optimizer steps."""
    steps = adapt.epochs * math.ceil(len(sequences) / adapt.batch_size)
    with tqdm(total=steps, desc=f"{name}: training", unit="step", dynamic_ncols=True) as bar:

        def step(loss: float) -> None:
            bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
            bar.update()

        return train_adapter(runtime, sequences, adapt, on_step=step)


def evaluate_condition(
    runtime: ModelRuntime,
    cfg: SealConfig,
    passages: list[SquadPassage],
    cond: Condition,
    teacher: list[list[str]] | None,
    seed: int,
    judge,
    edits_path: Path,
) -> dict:
    """Train one adapter on every passage's self-edit (none for base), then grade every question
    closed-book, passage by passage (knowledge.py's batches, so `base` answers as it does)."""
    record: dict = {"condition": cond.name, "n_passages": len(passages)}
    # B = 0: the base model exactly, which answers for `base` and writes the self-edits.
    runtime.reset_adapter(cfg.adapt.seed)
    fallback = [False] * len(passages)
    if cond.kind != "base":
        edits = passage_self_edits(runtime, cfg, passages, cond, teacher, seed, edits_path)
        sequences = [s for e in edits for s in e["sequences"]]
        record["self_edit_seconds"] = round(sum(e["seconds"] for e in edits), 3)
        record["train"] = train_pooled(runtime, sequences, cfg.adapt, cond.name).as_dict()
        fallback = [e["self_edit"]["fallback"] for e in edits]
    start = time.perf_counter()
    bar = tqdm(passages, desc=f"{cond.name}: answering", unit="passage", dynamic_ncols=True)
    graded = [answer_and_grade(runtime, p.questions, cfg.eval, judge) for p in bar]
    record["answer_seconds"] = round(time.perf_counter() - start, 3)
    record["passages"] = [
        {"index": i, "title": p.title, "fallback": f, "graded": [g.as_dict() for g in gs]}
        for i, (p, f, gs) in enumerate(zip(passages, fallback, graded, strict=True))
    ]
    return record


# ----------------------------------------------------------------------------- report
def passage_records(record: dict) -> list[dict]:
    """One condition's answers as knowledge.py's per-passage records, for its summarize."""
    return [
        {
            "index": p["index"],
            "condition": record["condition"],
            "graded": p["graded"],
            "self_edit": {"fallback": p["fallback"]},
        }
        for p in record["passages"]
    ]


def cpt_summary(
    table: dict[str, dict],
    data: Path,
    passages: list[SquadPassage],
    trained: str | None,
    start: str | None,
) -> dict:
    """The table in the shape results/writer/cpt.json keeps (issue 16)."""
    return {
        "data": data.name,
        "n_passages": len(passages),
        "n_questions": sum(len(p.questions) for p in passages),
        "conditions": {name: headline(e) for name, e in table.items()},
        "passage": PASSAGE if PASSAGE in table else None,
        "teacher": TEACHER if TEACHER in table else None,
        "trained": trained,
        "start": start,
    }


def training_note(records: dict[str, dict]) -> str:
    sizes = [
        f"{name} {r['train']['n_sequences']} sequences, {r['train']['steps']} steps, "
        f"{r['train']['seconds']:.0f} s"
        for name, r in records.items()
        if "train" in r
    ]
    return "Training (one adapter per condition, all passages pooled): " + "; ".join(sizes) + "."


# ----------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=EVAL200, help="SQuAD-format JSON file")
    ap.add_argument(
        "--passages", type=int, default=50, help="N: the first N passages, learned together"
    )
    ap.add_argument(
        "--conditions", default=DEFAULT_CONDITIONS, help="comma-separated, as evals/knowledge.py"
    )
    ap.add_argument("--seed", type=int, default=0, help="seed for self-edits and bootstrap")
    ap.add_argument("--out", type=Path, default=Path("runs/cpt"))
    ap.add_argument(
        "--policy-store", type=Path, help="policy store of FORMAT@N conditions (seal train-policy)"
    )
    ap.add_argument(
        "--trained",
        metavar="NAME",
        help="the condition of the best trained writer, cpt.json's `trained` (null if not given)",
    )
    ap.add_argument(
        "--start",
        metavar="NAME",
        help="the condition ReST-EM started from, cpt.json's `start` (null if not given)",
    )
    add_config_arguments(ap)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    # ---- setup: validate everything before loading the model
    args = parse_args(argv)
    cfg = config_from_args(args)
    conditions = run_conditions(args, cfg)
    check_named("--trained", args.trained, conditions)
    check_named("--start", args.start, conditions)
    passages = select_passages(args.data, args.passages)
    teachers = load_teachers(conditions, passages)
    names = [c.name for c in conditions]
    run_config = {
        "data": str(args.data.resolve()),
        "seed": args.seed,
        "passages": args.passages,  # unlike knowledge.py's --limit, N changes every result
        "conditions": names,
        **result_settings(cfg),
    }
    open_run(args.out, run_config)
    log_path, edits_path = args.out / "conditions.jsonl", args.out / "self_edits.jsonl"
    done = {r["condition"] for r in read_jsonl(log_path)}
    todo = [c for c in conditions if c.name not in done]
    n_questions = sum(len(p.questions) for p in passages)
    print(
        f"{len(passages)} passages ({n_questions} questions) learned together x "
        f"{len(conditions)} conditions: {len(conditions) - len(todo)} done, "
        f"{len(todo)} to do -> {args.out}",
        file=sys.stderr,
    )

    # ---- run
    if todo:
        runtime = ModelRuntime.load(cfg.model, cfg.adapt)
        judge = build_judge(cfg, runtime)
        for cond in todo:
            record = evaluate_condition(
                runtime, cfg, passages, cond, teachers.get(cond.name), args.seed, judge, edits_path
            )
            append_jsonl(log_path, record)

    # ---- report
    records = {r["condition"]: r for r in read_jsonl(log_path) if r["condition"] in names}
    table = summarize(
        [pr for r in records.values() for pr in passage_records(r)],
        names,
        cfg.eval.bootstrap_samples,
        args.seed,
    )
    for name, entry in table.items():
        if "train" in records[name]:
            entry["train_seconds"] = records[name]["train"]["seconds"]
            entry["n_sequences"] = records[name]["train"]["n_sequences"]
    note = (
        f"Continued pretraining: the first {len(passages)} passages of {args.data.name} "
        f"({n_questions} questions) learned together into one adapter per condition, then "
        f"answered closed-book; model {cfg.model.name}; LoRA r={cfg.adapt.rank} "
        f"alpha={cfg.adapt.alpha} lr={cfg.adapt.learning_rate} epochs={cfg.adapt.epochs} "
        f"batch={cfg.adapt.batch_size}; intervals: 95% bootstrap over passages.\n\n"
        + training_note(records)
    )
    write_atomic(
        args.out / "results.json",
        json.dumps({"conditions": table, "config": run_config}, indent=2) + "\n",
    )
    summary = cpt_summary(table, args.data, passages, args.trained, args.start)
    write_atomic(args.out / "cpt.json", json.dumps(summary, indent=2) + "\n")
    md = markdown_table(table, note)
    write_atomic(args.out / "results.md", md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
