"""The self-edit writer's table (issue 16): knowledge.py runs joined on the passages they share.

    python evals/writer_table.py runs/learning/formats runs/writer-eval \\
        --trained implications@bundled --start implications --out results/writer

Conditions measured in different evals/knowledge.py runs (the formats study's passage, own
implications and teachers; a writer's FORMAT@N or FORMAT@bundled run later) are compared on the
passages every one of them measured, with the same protocol (the runs' settings must agree).
Writes rounds.json in the issue's shape (per condition: contained and short answers with 95%
intervals resampled over passages, gold log-prob; `passage`, `teacher`, `trained`, `start`) plus
the paired differences of the trained writer against the passage, the teacher and its starting
point (both sides resampled on the same passages, which is what separates them on a few dozen
passages), and rounds.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from agent.core.errors import SealError, run_cli
from agent.core.io import read_jsonl, write_atomic
from evals.knowledge import RUN_SCOPE, graded_score, headline, markdown_table, summarize


def load_runs(folders: list[Path]) -> tuple[list[dict], dict]:
    """Every (passage, condition) record of the runs, the first run's when two hold one, and the
    settings they share; runs with other settings are refused."""
    records, seen, settings = [], set(), None
    for folder in folders:
        config_path, log_path = folder / "config.json", folder / "passages.jsonl"
        if not config_path.is_file() or not log_path.is_file():
            raise SealError(
                f"{folder} is not an evals/knowledge.py run (config.json, passages.jsonl)"
            )
        config = json.loads(config_path.read_text(encoding="utf-8"))
        config = {k: v for k, v in config.items() if k not in RUN_SCOPE}
        if settings is not None and config != settings:
            raise SealError(f"{folder} was run with other settings than {folders[0]}")
        settings = config
        for r in read_jsonl(log_path):
            if (r["index"], r["condition"]) not in seen:
                seen.add((r["index"], r["condition"]))
                records.append(r)
    return records, settings or {}


def shared_passages(records: list[dict], conditions: list[str]) -> list[int]:
    by_condition = {c: {r["index"] for r in records if r["condition"] == c} for c in conditions}
    missing = [c for c, indices in by_condition.items() if not indices]
    if missing:
        raise SealError(f"no run holds the conditions {missing}")
    return sorted(set.intersection(*by_condition.values()))


def paired_difference(
    records: list[dict], a: str, b: str, key: str, samples: int, seed: int
) -> dict:
    """Micro-averaged `key` of condition a minus b, with a 95% interval from resampling the
    passages, the same draw for both."""
    rows = {}
    for c in (a, b):
        recs = sorted((r for r in records if r["condition"] == c), key=lambda r: r["index"])
        rows[c] = np.array(
            [[len(r["graded"]), sum(graded_score(g, key) for g in r["graded"])] for r in recs]
        )
    micro = lambda m: m[..., 1].sum(-1) / m[..., 0].sum(-1)  # noqa: E731
    draws = np.random.default_rng(seed).integers(0, len(rows[a]), size=(samples, len(rows[a])))
    boots = micro(rows[a][draws]) - micro(rows[b][draws])
    lo, hi = np.percentile(boots, [2.5, 97.5])
    point = micro(rows[a]) - micro(rows[b])
    return {
        "difference": round(float(point), 4),
        "ci95": [round(float(lo), 4), round(float(hi), 4)],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", type=Path, nargs="+", help="evals/knowledge.py output folders")
    ap.add_argument("--conditions", help="comma-separated (default: every condition found)")
    ap.add_argument("--passage", default="passage", help="the passage-only condition")
    ap.add_argument("--teacher", default="teacher:gpt41", help="the teacher to beat")
    ap.add_argument("--trained", required=True, help="the trained writer's condition")
    ap.add_argument("--start", required=True, help="the condition its training started from")
    ap.add_argument("--samples", type=int, default=2000, help="bootstrap resamples")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("runs/writer"))
    args = ap.parse_args(argv)
    records, settings = load_runs(args.runs)
    found = list(dict.fromkeys(r["condition"] for r in records))
    conditions = args.conditions.split(",") if args.conditions else found
    named = [args.passage, args.teacher, args.trained, args.start]
    unknown = [c for c in dict.fromkeys(conditions + named) if c not in found]
    if unknown:
        raise SealError(f"the runs hold no condition {unknown}; they hold {found}")
    conditions = list(dict.fromkeys(conditions + named))
    passages = set(shared_passages(records, conditions))
    kept = [r for r in records if r["index"] in passages and r["condition"] in conditions]
    table = summarize(kept, conditions, args.samples, args.seed)
    first = next(iter(table.values()))
    differences = {
        f"{args.trained} - {other}": {
            key: paired_difference(kept, args.trained, other, key, args.samples, args.seed)
            for key in ("contained", "short")
        }
        for other in dict.fromkeys([args.passage, args.teacher, args.start])
        if other != args.trained
    }
    result = {
        "data": Path(settings.get("data", "")).name,
        "n_passages": first["n_passages"],
        "n_questions": first["n_questions"],
        "conditions": {name: headline(e) for name, e in table.items()},
        "passage": args.passage,
        "teacher": args.teacher,
        "trained": args.trained,
        "start": args.start,
        "paired_differences": differences,
        "runs": [str(r) for r in args.runs],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out / "rounds.json", json.dumps(result, indent=2) + "\n")
    lines = [
        f"- {name} {key}: {100 * d['difference']:+.1f} points "
        f"[{100 * d['ci95'][0]:+.1f}, {100 * d['ci95'][1]:+.1f}]"
        for name, by_key in differences.items()
        for key, d in by_key.items()
    ]
    note = (
        f"{first['n_passages']} passages measured by every condition ({first['n_questions']} "
        f"questions), from {', '.join(map(str, args.runs))}; 95% intervals resampled over "
        "passages. Paired differences (the same passages resampled for both sides):\n\n"
        + "\n".join(lines)
    )
    md = markdown_table(table, note)
    write_atomic(args.out / "rounds.md", md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
