"""SEAL's single-passage knowledge-incorporation protocol (arXiv 2506.10943, section 4.2).

For every passage and condition, a fresh adapter is trained from the base model on that condition's
training sequences, then the passage's questions are answered closed-book.

    python evals/knowledge.py --limit 50 --out runs/knowledge \
        --conditions base,passage,implications,teacher:gpt41,teacher:seal-iter2

Conditions: `base` (no update), `passage` (the passage alone), any self-edit format name (the model
writes its own self-edits: implications, implications-long, rewrite, self-qa), and `teacher:X`
(self-edits read from a file shaped like SEAL's selfedits_*_eval200.json; `gpt41` and `seal-iter2`
name the vendored ones). `FORMAT@POLICY` has a self-edit policy trained by `seal train-policy` write
them: POLICY is a version number in the policy store (`--policy-store`, else policy.store, else
<home>/policies; 0 = the model itself), a policy folder, or `bundled` (the writer seal ships,
policies/writer/), e.g. `--conditions implications@0,implications@1,implications@bundled`. A
plain format is always written by the model itself, whatever self_edit.policy says.
Writes `passages.jsonl` (one line per passage and condition),
`results.json`, `results.md` and `config.json` to --out; rerunning resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agent.core.answering import answer_and_grade, short_answer
from agent.core.config import SealConfig, add_config_arguments, config_from_args
from agent.core.errors import SealError, run_cli
from agent.core.inner_loop import train_adapter
from agent.core.io import append_jsonl, read_jsonl, write_atomic
from agent.core.runtime import ModelRuntime
from agent.core.squad import EVAL200, SquadPassage, load_squad
from evals.judge import make_judge
from evals.teachers import load_teacher, resolve_teacher
from policies.self_edit import FORMATS, SelfEdit, teacher_self_edits, write_self_edits
from stores.policies import resolve_policy
from stores.state import default_home

DEFAULT_CONDITIONS = "base,passage,implications,teacher:gpt41,teacher:seal-iter2"
METRICS = ("contained", "short", "em", "f1")


@dataclass(frozen=True)
class Condition:
    name: str  # as given: base, passage, implications, teacher:gpt41, ...
    kind: str  # base | format | teacher
    teacher_file: Path | None = None
    # FORMAT@WRITER: "bundled" (the writer seal ships) or a policy folder; a plain FORMAT is
    # written by the model itself (None), whatever self_edit.policy says
    policy: Path | str | None = None


def parse_conditions(spec: str, policy_store: Path | None = None) -> list[Condition]:

    out = []
    for name in [c.strip() for c in spec.split(",") if c.strip()]:
        fmt, at, policy = name.partition("@")
        if at and fmt in FORMATS and FORMATS[fmt].generates:
            writer = "bundled" if policy == "bundled" else resolve_policy(policy, policy_store)
            out.append(Condition(name, "format", policy=writer))
        elif name == "base":
            out.append(Condition(name, "base"))
        elif name == "passage" or name in FORMATS:
            out.append(Condition(name, "format"))
        elif name.startswith("teacher:"):
            path = resolve_teacher(name.split(":", 1)[1])
            if not path.is_file():
                raise SealError(f"condition {name}: teacher file {path} does not exist")
            out.append(Condition(name, "teacher", path))
        else:
            raise SealError(
                f"unknown condition {name!r}; use base, passage, a format "
                f"({', '.join(f for f in FORMATS if f != 'passage-only')}) or teacher:FILE"
            )
    if not out:
        raise SealError("--conditions is empty")
    return out


# ----------------------------------------------------------------------------- aggregation
def _micro(rows: np.ndarray) -> np.ndarray:
    """rows: (P, 1 + M) per-passage [n_questions, sum metric...] -> micro means (M,)."""
    return rows[:, 1:].sum(0) / max(rows[:, 0].sum(), 1)


def graded_score(graded: dict, key: str) -> float:
    """One graded answer's score; records written before the short-answer score get it here."""
    if key == "short" and key not in graded:
        return short_answer(graded["prediction"], graded["gold"])
    if key == "recited" and key not in graded:
        return float(graded["contained"] and not graded_score(graded, "short"))
    return float(graded[key])


def summarize(
    records: list[dict], conditions: list[str], samples: int, seed: int
) -> dict[str, dict]:
    """Micro-averaged metrics per condition with a 95% bootstrap interval over passages.

    Passages, not questions, are resampled: questions of one passage share one adapter, so they
    are not independent draws.
    """
    keys = (*METRICS, "gold_logprob", "recited")
    rng = np.random.default_rng(seed)
    table: dict[str, dict] = {}
    for cond in conditions:
        recs = sorted((r for r in records if r["condition"] == cond), key=lambda r: r["index"])
        if not recs:
            continue
        rows = np.array(
            [
                [len(r["graded"])] + [sum(graded_score(g, k) for g in r["graded"]) for k in keys]
                for r in recs
            ],
            dtype=float,
        )
        point = _micro(rows)
        draws = rng.integers(0, len(rows), size=(samples, len(rows)))
        boots = np.stack([_micro(rows[d]) for d in draws])  # (samples, M)
        lo, hi = np.percentile(boots, [2.5, 97.5], axis=0)
        entry: dict = {k: round(float(point[i]), 4) for i, k in enumerate(keys)}
        entry["ci95"] = {
            k: [round(float(lo[i]), 4), round(float(hi[i]), 4)] for i, k in enumerate(keys)
        }
        entry["n_passages"] = len(recs)
        entry["n_questions"] = int(rows[:, 0].sum())
        train = [r["train"]["seconds"] for r in recs if r.get("train")]
        if train:
            entry["train_seconds_median"] = round(float(np.median(train)), 2)
        fallbacks = sum(1 for r in recs if (r.get("self_edit") or {}).get("fallback"))
        if fallbacks:
            entry["fallback_passages"] = fallbacks
        table[cond] = entry
    return table


def markdown_table(table: dict[str, dict], note: str) -> str:
    lines = [
        "| condition | contained (95% CI) | short answer (95% CI) | EM (95% CI) | F1 (95% CI) "
        "| gold log-prob | recited | passages | questions |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, e in table.items():
        cells = [
            f"{100 * e[m]:.1f} [{100 * e['ci95'][m][0]:.1f}, {100 * e['ci95'][m][1]:.1f}]"
            for m in METRICS
        ]
        lines.append(
            f"| {name} | {' | '.join(cells)} | {e['gold_logprob']:.3f} "
            f"| {100 * e['recited']:.1f}% | {e['n_passages']} "
            f"| {e['n_questions']} |"
        )
    return "\n".join(lines) + f"\n\n{note}\n"


def headline(entry: dict) -> dict:
    """One condition's headline numbers: contained and short answers with their intervals."""
    return {
        "contained": entry["contained"],
        "ci95": entry["ci95"]["contained"],
        "short": entry["short"],
        "short_ci95": entry["ci95"]["short"],
        "gold_logprob": entry["gold_logprob"],
    }


def formats_summary(table: dict[str, dict], data: Path, conditions: list[Condition]) -> dict:
    """The table in the shape results/learning/formats.json keeps: contained and short answers
    with their intervals per condition, and the best condition the model writes itself."""
    own = [c.name for c in conditions if c.kind == "format" and c.name != "passage"]
    scored = [name for name in own if name in table]
    first = next(iter(table.values()), {"n_passages": 0, "n_questions": 0})
    return {
        "data": data.name,
        "n_passages": first["n_passages"],
        "n_questions": first["n_questions"],
        "conditions": {name: headline(e) | {"recited": e["recited"]} for name, e in table.items()},
        "best_own": max(scored, key=lambda n: (table[n]["short"], table[n]["contained"]))
        if scored
        else None,
    }


# ----------------------------------------------------------------------------- the run
def condition_self_edit(
    runtime,
    cfg: SealConfig,
    passage: SquadPassage,
    cond: Condition,
    teacher: list[str] | None,
    seed: int,
) -> SelfEdit:
    """The self-edit a condition (not `base`) trains on for one passage: the teacher's completion
    that `seed` picks, or the one the model (or the condition's policy) writes. The knowledge
    adapter must be the base (B = 0) when the model writes."""
    if cond.kind == "teacher":
        return teacher_self_edits(
            [teacher[seed % len(teacher)]],
            passage.title,
            passage.context,
            cfg.self_edit,
            count_tokens=runtime.count_tokens,
        )[0]
    fmt = FORMATS["passage-only" if cond.name == "passage" else cond.name.split("@")[0]]
    se_cfg = cfg.self_edit.model_copy(update={"policy": cond.policy})
    return write_self_edits(
        runtime, passage.title, passage.context, se_cfg, fmt=fmt, seed=seed, asking=cfg.eval
    )[0]


def evaluate_passage(
    runtime,
    cfg: SealConfig,
    passage: SquadPassage,
    cond: Condition,
    teacher: list[str] | None,
    seed: int,
    judge,
) -> dict:
    """Train a fresh adapter for one condition (none for base) and grade closed-book answers."""

    record: dict = {"condition": cond.name}
    # B = 0: the base model exactly, which answers for `base` and writes the self-edits.
    runtime.reset_adapter(cfg.adapt.seed)
    if cond.kind == "base":
        record["graded"] = answer_and_grade(runtime, passage.questions, cfg.eval, judge)
        return record
    start = time.perf_counter()
    edit = condition_self_edit(runtime, cfg, passage, cond, teacher, seed)
    record["self_edit_seconds"] = round(time.perf_counter() - start, 3)
    log = train_adapter(runtime, edit.sequences, cfg.adapt)
    start = time.perf_counter()
    record["graded"] = answer_and_grade(runtime, passage.questions, cfg.eval, judge)
    record["answer_seconds"] = round(time.perf_counter() - start, 3)
    record["self_edit"] = edit.as_dict()
    record["train"] = log.as_dict()
    return record


def _differs(saved, new) -> bool:
    """Whether a saved setting differs from the new one. A field the saved run does not have
    came later, with a default that keeps the earlier behaviour, so it does not count."""
    if isinstance(saved, dict) and isinstance(new, dict):
        return any(k in saved and _differs(saved[k], v) for k, v in new.items())
    return saved != new


# What may change between runs of one folder (and between runs a table joins): which passages and
# conditions; every other setting of config.json must match.
RUN_SCOPE = ("limit", "start", "conditions")


def open_run(out: Path, run_config: dict) -> None:
    """Make the run folder, or check that the run it holds has the same settings (what `limit`,
    `start` and `conditions` say may change), then save `run_config` as its config.json."""
    out.mkdir(parents=True, exist_ok=True)
    saved_path = out / "config.json"
    if saved_path.exists():
        saved = json.loads(saved_path.read_text(encoding="utf-8"))
        diff = [
            k for k in run_config if k not in RUN_SCOPE and _differs(saved.get(k), run_config[k])
        ]
        if diff:
            raise SealError(
                f"{out} holds a run with different settings ({', '.join(diff)}); "
                "use another --out, or delete it to start over"
            )
    write_atomic(saved_path, json.dumps(run_config, indent=2) + "\n")


def load_teachers(conditions: list[Condition], passages: list[SquadPassage]) -> dict:
    """Each teacher condition's completions per passage."""
    return {
        c.name: load_teacher(c.teacher_file, passages) for c in conditions if c.kind == "teacher"
    }


def result_settings(cfg: SealConfig) -> dict:
    """The config sections results depend on, as saved in config.json and checked on resume.
    The format comes from each condition, and settings that change speed or where files live
    (threads, cache, downloads) do not change results."""
    return cfg.model_dump(
        mode="json",
        include={"model", "adapt", "self_edit", "eval"},
        exclude={
            "model": {"threads", "cache_dir", "allow_download"},
            "self_edit": {"format", "policy"},  # each condition names its format and writer
        },
    )


def run_conditions(args: argparse.Namespace, cfg: SealConfig) -> list[Condition]:
    """The conditions of --conditions, their FORMAT@N versions found in the policy store."""
    if isinstance(cfg.self_edit.policy, Path):
        raise SealError(
            "each condition names its writer: write FORMAT@FOLDER (or @N, @bundled) in "
            "--conditions instead of setting self_edit.policy"
        )
    return parse_conditions(args.conditions, policy_store_folder(args.policy_store, cfg))


def policy_store_folder(flag: Path | None, cfg: SealConfig) -> Path:
    """Where FORMAT@N conditions find policy version N: --policy-store, else policy.store,
    else the state folder's policies/."""
    if flag is not None:
        return flag
    if cfg.policy.store is not None:
        return cfg.policy.store
    return Path(cfg.store.home or default_home()).expanduser() / "policies"


def build_judge(cfg: SealConfig, runtime):
    if cfg.eval.judge == "none":
        return None

    return make_judge(cfg.eval, runtime)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=EVAL200, help="SQuAD-format JSON file")
    ap.add_argument("--conditions", default=DEFAULT_CONDITIONS, help="comma-separated list")
    ap.add_argument("--limit", type=int, default=None, help="first N passages only")
    ap.add_argument(
        "--start",
        type=int,
        default=0,
        help="run passages from index START on (two processes can split a run between two "
        "folders; append one's passages.jsonl to the other's and rerun to report both)",
    )
    ap.add_argument("--seed", type=int, default=0, help="seed for self-edits and bootstrap")
    ap.add_argument("--out", type=Path, default=Path("runs/knowledge"))
    ap.add_argument(
        "--policy-store", type=Path, help="policy store of FORMAT@N conditions (seal train-policy)"
    )
    add_config_arguments(ap)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    # ---- setup: validate everything before loading the model
    args = parse_args(argv)
    cfg = config_from_args(args)
    conditions = run_conditions(args, cfg)
    passages = load_squad(args.data)[: args.limit]
    teachers = load_teachers(conditions, passages)
    run_config = {
        "data": str(args.data.resolve()),
        "seed": args.seed,
        "limit": args.limit,
        "start": args.start,
        "conditions": [c.name for c in conditions],
        **result_settings(cfg),
    }
    open_run(args.out, run_config)
    log_path = args.out / "passages.jsonl"
    done = {(r["index"], r["condition"]) for r in read_jsonl(log_path)}
    todo = [
        (i, c)
        for i in range(args.start, len(passages))
        for c in conditions
        if (i, c.name) not in done
    ]
    print(
        f"{len(passages)} passages x {len(conditions)} conditions: {len(done)} done, "
        f"{len(todo)} to do -> {args.out}",
        file=sys.stderr,
    )

    # ---- run
    if todo:
        from tqdm import tqdm

        runtime = ModelRuntime.load(cfg.model, cfg.adapt)
        judge = build_judge(cfg, runtime)
        for i, cond in tqdm(todo, desc="passage x condition", unit="run", dynamic_ncols=True):
            p = passages[i]
            teacher = teachers[cond.name][i] if cond.kind == "teacher" else None
            record = evaluate_passage(runtime, cfg, p, cond, teacher, args.seed, judge)
            record["graded"] = [g.as_dict() for g in record["graded"]]
            append_jsonl(log_path, {"index": i, "title": p.title, **record})

    # ---- report
    wanted = {c.name for c in conditions}
    first: dict[tuple[int, str], dict] = {}  # of a pair two merged runs both ran
    for r in read_jsonl(log_path):
        if r["index"] < len(passages) and r["condition"] in wanted:
            first.setdefault((r["index"], r["condition"]), r)
    records = list(first.values())
    table = summarize(records, [c.name for c in conditions], cfg.eval.bootstrap_samples, args.seed)
    note = (
        f"Closed-book accuracy on {args.data.name}, {len(passages)} passages, model "
        f"{cfg.model.name}; LoRA r={cfg.adapt.rank} alpha={cfg.adapt.alpha} lr="
        f"{cfg.adapt.learning_rate} epochs={cfg.adapt.epochs} batch={cfg.adapt.batch_size}; "
        "intervals: 95% bootstrap over passages."
    )
    write_atomic(
        args.out / "results.json",
        json.dumps({"conditions": table, "config": run_config}, indent=2) + "\n",
    )
    write_atomic(
        args.out / "formats.json",
        json.dumps(formats_summary(table, args.data, conditions), indent=2) + "\n",
    )
    md = markdown_table(table, note)
    write_atomic(args.out / "results.md", md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
