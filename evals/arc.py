"""Few-shot learning on ARC (SEAL section 4.1, Table 1): four conditions on SEAL's evaluation tasks.

    python evals/arc.py --size reduced --out runs/arc          # this CPU, about 30-45 minutes
    python evals/arc.py --size full --out runs/arc-full        # SEAL's protocol, for a GPU

Conditions: `icl` (the task in context, no training), `ttt-oracle` (test-time training with a
fixed config, `--arc-set oracle=...`), `ttt-self-edit` (configs written by the untrained model),
`seal` (configs written by the writer after ReST-EM). The writer is trained first, with the same
code as `seal train-policy --task arc` (policy store, log and resume in OUT/policy), unless
`--policy-store` names one already trained. Each (task, self-edit) pair is trained from the base
model and answers the task's test input(s) by voting over augmented views with two attempts.
Reported per condition: solved (SEAL's score: the share of (task, self-edit) pairs solved),
partial credit and the gold output's log-probability per token, with 95% bootstrap intervals over
tasks. Writes `records.jsonl` (one line per unit of work, appended: a rerun resumes), and
`results.json`, `report.md`, `config.json` and pictures of a solved and a failed task to --out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from agent.core.config import SealConfig, add_config_arguments
from agent.core.errors import SealError, run_cli
from agent.core.io import append_jsonl, read_jsonl, write_atomic
from agent.train_arc_policy import resolve, run_config, solutions_for, train_policy
from agent.train_policy import check_resumable
from evals.arc_report import pictures, summarize, write_report
from policies.arc.grids import ArcTask, load_tasks
from policies.arc.self_edit import ArcSelfEdit, write_configs
from policies.arc.settings import SIZES, ArcSettings
from stores.policies import PolicyStore, resolve_policy

DATA = Path(__file__).resolve().parent / "data" / "arc"
EVAL_CHALLENGES = DATA / "arc-agi_evaluation_challenges_filtered_1B_eval_set.json"
TRAIN_CHALLENGES = DATA / "arc-agi_training_challenges_filtered_1B_training_set.json"
CONDITIONS = ("icl", "ttt-oracle", "ttt-self-edit", "seal")
RECORDS = "records.jsonl"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", choices=SIZES, default="reduced", help="preset of sizes")
    ap.add_argument("--out", type=Path, default=Path("runs/arc"))
    ap.add_argument("--conditions", default=",".join(CONDITIONS), help="comma-separated list")
    ap.add_argument("--eval-data", type=Path, default=EVAL_CHALLENGES, help="challenges file")
    ap.add_argument("--train-data", type=Path, default=TRAIN_CHALLENGES, help="for ReST-EM")
    ap.add_argument(
        "--policy-store", type=Path, help="a writer already trained (default: train OUT/policy)"
    )
    ap.add_argument(
        "--arc-set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override one ARC setting (policies/arc/settings.py)",
    )
    ap.add_argument("--seed", type=int, default=0, help="seed of the config samples")
    add_config_arguments(ap)
    return ap.parse_args(argv)


def eval_tasks(path: Path, limit: int) -> list[ArcTask]:
    """SEAL's evaluation tasks, fewest cells first (the cheapest when `limit` cuts)."""
    tasks = sorted(load_tasks(path, solutions_for(path)), key=lambda t: t.cells)
    return tasks[: limit or None]


def sample_seed(seed: int, index: int) -> int:
    """The same seed for both writers of a task, so they differ only by their weights."""
    return seed * 1_000_003 + 7_919 * index


class Runner:
    """Runs the units of one task (every condition), appending a record per unit."""

    def __init__(self, cfg: SealConfig, settings: ArcSettings, log: Path, writer: Path | None):
        # Deferred: these load torch, which argument checking and resuming must not wait for.
        from agent.core.runtime import ModelRuntime
        from policies.executor import make_executor

        self.cfg, self.settings, self.log, self.writer = cfg, settings, log, writer
        self.runtime = ModelRuntime.load(cfg.model, cfg.adapt)
        self.executor = make_executor(cfg, self.runtime)

    def close(self) -> None:
        self.executor.close()

    def _append(self, record: dict, records: list[dict]) -> None:
        append_jsonl(self.log, record)
        records.append(record)

    def run_task(self, index: int, task: ArcTask, conditions, records, done, bar, seed) -> None:
        # Deferred: loads torch.
        from policies.arc.rest_em import apply_configs
        from policies.arc.ttt import ArcResult, ArcTTTTask

        s = self.settings
        untrained = next(
            (
                ArcResult.from_dict(r["result"])
                for r in records
                if r["kind"] == "result" and r["condition"] == "icl" and r["task"] == task.id
            ),
            None,
        )
        for cond in conditions:
            samples = 1 if cond in ("icl", "ttt-oracle") else s.self_edits_per_task
            if all((cond, task.id, k) in done for k in range(samples)):
                continue
            start = time.perf_counter()
            bar.set_description(f"{task.id} {cond}")
            if cond in ("icl", "ttt-oracle"):
                raw = None if cond == "icl" else ArcSelfEdit.from_oracle(s.oracle).as_json()
                unit = ArcTTTTask(f"{cond}/{task.id}", task.train, task.test, raw, s, seed, s.views)
                [result] = self.executor.map([unit])
                raws, results = [raw], [result]
                if cond == "icl":
                    untrained = result
            else:
                writer = None if cond == "ttt-self-edit" else self.writer
                raws = write_configs(self.runtime, task.train, s, samples, writer, seed)
                results, untrained = apply_configs(
                    self.runtime,
                    self.executor,
                    self.cfg,
                    s,
                    key=f"{cond}/{task.id}",
                    demos=task.train,
                    queries=task.test,
                    raws=raws,
                    seed=seed,
                    views=s.views,
                    untrained=untrained,
                )
            seconds = round((time.perf_counter() - start) / len(results), 2)
            for k, (raw, result) in enumerate(zip(raws, results, strict=True)):
                record = {
                    "kind": "result",
                    "condition": cond,
                    "task": task.id,
                    "index": index,
                    "sample": k,
                    "raw": raw,
                    "seconds": seconds,
                    "result": result.as_dict(),
                }
                self._append(record, records)
                done.add((cond, task.id, k))
                bar.update()


def main(argv: list[str] | None = None) -> int:
    # ---- setup: validate everything before loading the model
    args = parse_args(argv)
    cfg, settings = resolve(args.config, args.set, args.size, args.arc_set)
    conditions = [c.strip() for c in args.conditions.split(",") if c.strip()]
    unknown = [c for c in conditions if c not in CONDITIONS]
    if unknown or not conditions:
        raise SealError(f"unknown condition(s) {unknown}; choose from {', '.join(CONDITIONS)}")
    tasks = eval_tasks(args.eval_data, settings.eval_tasks)
    args.out.mkdir(parents=True, exist_ok=True)
    config = {
        **run_config(cfg, settings, args.eval_data),
        "size": args.size,
        "seed": args.seed,
        "eval_tasks": [t.id for t in tasks],
        "self_edits_per_task": settings.self_edits_per_task,
        "train_data": str(args.train_data.resolve()),
        "policy_store": str(args.policy_store) if args.policy_store else None,
    }
    check_resumable(args.out, config)
    write_atomic(args.out / "config.json", json.dumps(config, indent=2) + "\n")
    start = time.perf_counter()

    # ---- run: the writer's ReST-EM first (resumed), then every task's units
    writer, rest_em = None, None
    if "seal" in conditions:
        if args.policy_store:
            writer = resolve_policy(args.policy_store)
        else:
            root = args.out / "policy"
            rest_em = train_policy(cfg, settings, args.train_data, root)
            writer = PolicyStore(root).folder(PolicyStore(root).current())
    log = args.out / RECORDS
    records = list(read_jsonl(log))
    done = {(r["condition"], r["task"], r["sample"]) for r in records if r["kind"] == "result"}
    per = {c: 1 if c in ("icl", "ttt-oracle") else settings.self_edits_per_task for c in conditions}
    todo = sum(
        1 for t in tasks for c in conditions for k in range(per[c]) if (c, t.id, k) not in done
    )
    print(
        f"ARC: {len(tasks)} tasks x {conditions} ({settings.self_edits_per_task} self-edits per "
        f"task); {len(done)} units done, {todo} to do -> {args.out}",
        file=sys.stderr,
    )
    if todo:
        from tqdm import tqdm

        runner = Runner(cfg, settings, log, writer)
        bar = tqdm(total=todo, desc="ARC", unit="unit", dynamic_ncols=True)
        try:
            for index, task in enumerate(tasks):
                seed = sample_seed(args.seed, index)
                runner.run_task(index, task, conditions, records, done, bar, seed)
        finally:
            bar.close()
            runner.close()

    # ---- report
    wanted = {t.id for t in tasks}
    results = [r for r in records if r["kind"] == "result" and r["task"] in wanted]
    table = summarize(results, [t.id for t in tasks], conditions, cfg.eval.bootstrap_samples)
    if rest_em is None and (args.out / "policy" / "summary.json").exists():
        rest_em = json.loads((args.out / "policy" / "summary.json").read_text(encoding="utf-8"))
    shown = pictures(results, {t.id: t for t in tasks}, args.out)
    summary = {
        "tasks": len(tasks),
        "self_edits_per_task": settings.self_edits_per_task,
        "conditions": {c: table["conditions"][c] for c in conditions if c in table["conditions"]},
        "comparisons": table["comparisons"],
        "per_task": table["per_task"],
        "task_ids": [t.id for t in tasks],
        "size": args.size,
        "model": cfg.model.name,
        "pictures": shown,
        "rest_em": rest_em,
        "seconds_this_run": round(time.perf_counter() - start, 1),
        "seconds_units": round(sum(r["seconds"] for r in results), 1),
        "command": "python evals/arc.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    write_atomic(args.out / "results.json", json.dumps(summary, indent=2) + "\n")
    md = write_report(summary, config, settings, args.out)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
