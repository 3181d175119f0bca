"""The learning study of issue "learning that shows": self-edit formats against the passage alone,
and each of SEAL's protocol choices we depart from, measured on the same eval200 passages.

    HF_HUB_OFFLINE=1 .venv/bin/python evals/learning.py --passages 100 --out runs/learning

Runs evals/knowledge.py once per variant, in blocks of --block passages across all variants, so
that a run stopped at any point leaves every variant measured on the same first passages; a rerun
resumes. Variants (each on the passage alone and on the model's own self-edits):

    formats        defaults; base, passage, every format, and SEAL's two teachers
    topic          questions asked as `Topic: {title}\\n{question}` (SEAL's query format)
    seal-recipe    SEAL's inner loop: 10 epochs, LoRA on q_proj and v_proj only
    chat-template  questions asked through the model's chat template

Writes formats.json (the issue's shape: contained and short answers with 95% intervals per
condition, best own format) and protocol.json (variant x condition) to --out.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from agent.core.errors import run_cli
from agent.core.io import write_atomic
from evals import knowledge

OWN = "qa-spans,implications"
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "formats": (
        f"base,passage,{OWN},implications-long,rewrite,self-qa,teacher:gpt41,teacher:seal-iter2",
        [],
    ),
    "topic": (f"passage,{OWN}", ["eval.question_topic=true"]),
    "seal-recipe": (
        f"passage,{OWN}",
        ["adapt.epochs=10", 'adapt.target_modules=["q_proj","v_proj"]'],
    ),
    "chat-template": (f"passage,{OWN}", ["eval.use_chat_template=true"]),
}


def run_variant(name: str, out: Path, limit: int, extra: list[str]) -> dict:
    conditions, settings = VARIANTS[name]
    argv = ["--limit", str(limit), "--out", str(out / name), "--conditions", conditions]
    argv += [a for s in settings for a in ("--set", s)] + extra
    knowledge.main(argv)
    return json.loads((out / name / "results.json").read_text(encoding="utf-8"))


def protocol_table(results: dict[str, dict]) -> dict:
    rows = {}
    for variant, result in results.items():
        for condition, e in result["conditions"].items():
            rows.setdefault(condition, {})[variant] = knowledge.headline(e) | {
                "n_passages": e["n_passages"]
            }
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--passages", type=int, default=100, help="eval200 passages (first N)")
    ap.add_argument("--block", type=int, default=10, help="passages per round over the variants")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset")
    ap.add_argument("--out", type=Path, default=Path("runs/learning"))
    args, extra = ap.parse_known_args(argv)  # anything else goes to knowledge.py (e.g. --set)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        ap.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    results: dict[str, dict] = {}
    for limit in range(args.block, args.passages + args.block, args.block):
        for name in variants:
            print(f"== {name}: passages 0-{min(limit, args.passages) - 1}", file=sys.stderr)
            results[name] = run_variant(name, args.out, min(limit, args.passages), extra)
        if "formats" in results:
            formats = results["formats"]
            conditions = knowledge.parse_conditions(VARIANTS["formats"][0])
            summary = knowledge.formats_summary(
                formats["conditions"], Path(formats["config"]["data"]), conditions
            )
            write_atomic(args.out / "formats.json", json.dumps(summary, indent=2) + "\n")
        table = {
            "variants": {v: VARIANTS[v] for v in results},
            "conditions": protocol_table(results),
        }
        write_atomic(args.out / "protocol.json", json.dumps(table, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
