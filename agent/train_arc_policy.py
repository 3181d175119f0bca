"""`seal train-policy --task arc`: ReST-EM rounds that teach the model to write ARC configs.

    seal train-policy ../shared/data/arc/arc-agi_training_challenges_filtered_1B_training_set.json \
        --task arc --arc-size reduced --out runs/arc-policy

The same machinery as the knowledge side (agent/train_policy.py): policy versions in a policy store
(round r writes version r), `log.jsonl` appended task by task so an interrupted run resumes at the
next task, a run's settings kept in `config.json` and checked on resume, inner loops through an
executor (`policy.executor = local | ray`). The ARC sizes come from a preset (policies/arc/
settings.py) beneath `--set` (project config) and `--arc-set` (ARC settings). The solutions file
is found beside the challenges file (`*_challenges*` -> `*_solutions*`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from agent.core.config import SealConfig, load_config, parse_overrides
from agent.core.errors import SealError
from agent.core.io import write_atomic
from agent.train_policy import (
    SUMMARY,
    commit_round,
    open_run,
    run_rounds,
    run_train_policy,
)
from policies.arc.grids import ArcTask, load_tasks
from policies.arc.self_edit import writer_prompt
from policies.arc.settings import SIZES, ArcSettings, merged, preset


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument(
        "--task",
        choices=("squad", "arc"),
        default="squad",
        help="squad: self-edits of passages (default); arc: ARC configs, DATA being an ARC "
        "challenges file",
    )
    ap.add_argument("--arc-size", choices=SIZES, default="reduced", help="ARC preset (--task arc)")
    ap.add_argument(
        "--arc-set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override one ARC setting (policies/arc/settings.py), e.g. --arc-set step_budget=32",
    )


def solutions_for(challenges: Path) -> Path:
    path = Path(challenges)
    if "challenges" not in path.name:
        raise SealError(f"{path}: expected an ARC challenges file (*_challenges*.json)")
    return path.with_name(path.name.replace("challenges", "solutions"))


def resolve(
    config: Path | None, sets: list[str], size: str, arc_sets: list[str]
) -> tuple[SealConfig, ArcSettings]:
    """The project config (the preset's adapt and policy sections under --config and --set) and
    the ARC settings (the preset's under --arc-set)."""
    base = preset(size)
    cfg = load_config(
        config, merged({k: base[k] for k in ("adapt", "policy")}, parse_overrides(sets))
    )
    arc = {}
    for item in arc_sets:
        key, sep, raw = item.partition("=")
        if not sep:
            raise SealError(f"--arc-set {item!r}: expected FIELD=VALUE, e.g. step_budget=32")
        try:
            arc[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            arc[key.strip()] = raw
    try:
        settings = ArcSettings.model_validate(merged(base["arc"], arc))
    except ValueError as exc:
        problems = "; ".join(str(line) for line in str(exc).splitlines()[1:])
        raise SealError(f"invalid ARC settings: {problems}") from None
    return cfg, settings


def run_config(cfg: SealConfig, settings: ArcSettings, data: Path) -> dict:
    return {
        "task": "arc",
        "data": str(Path(data).resolve()),
        **cfg.model_dump(
            mode="json", include={"model", "adapt"}, exclude={"model": {"threads", "cache_dir"}}
        ),
        "policy": cfg.policy.model_dump(
            mode="json", exclude={"rounds", "executor", "ray_address", "ray_workers", "store"}
        ),
        "arc": settings.model_dump(mode="json", exclude={"eval_tasks", "self_edits_per_task"}),
    }


def run(args: argparse.Namespace, cfg: SealConfig, home: Path) -> int:
    """`seal train-policy`: ARC configs with --task arc, else SQuAD self-edits."""
    if args.task == "arc":
        return run_train_arc_policy(args, home)
    return run_train_policy(args, cfg, home)


def run_train_arc_policy(args: argparse.Namespace, home: Path) -> int:
    # ---- setup: everything a user can get wrong is checked before the model loads
    cfg, settings = resolve(args.config, args.set, args.arc_size, args.arc_set)
    root = Path(args.out or cfg.policy.store or home / "policies-arc").expanduser()
    summary = train_policy(cfg, settings, args.data, root)
    print(report(summary, root))
    return 0


def train_policy(cfg: SealConfig, settings: ArcSettings, data: Path, root: Path) -> dict:
    """Setup, the rounds (resumed), and the summary; shared with evals/arc.py."""
    from policies.arc.rest_em import round_stats, training_tasks  # deferred: loads torch

    tasks = training_tasks(load_tasks(data, solutions_for(data)), cfg.policy.passages)
    if not tasks:
        raise SealError(f"{data} has no task with 3 or more demonstrations to train on")
    config = run_config(cfg, settings, data)
    store, records, finished, todo = open_run(root, config, "arc-task", tasks, cfg)
    rounds = cfg.policy.rounds
    print(
        f"ARC ReST-EM: {rounds} rounds x {len(tasks)} tasks x K={cfg.policy.candidates}, reward "
        f"{cfg.policy.reward}, executor {cfg.policy.executor}; {todo} task runs to do -> {root}",
        file=sys.stderr,
    )
    start = time.perf_counter()
    if todo or len(finished) < rounds:
        records = train(cfg, settings, tasks, store, records, rounds, todo)
    summary = {
        "tasks": [t.id for t in tasks],
        "rounds": [round_stats(records, r) for r in range(1, rounds + 1)],
        "versions": store.versions(),
        "current": store.current(),
        "seconds_this_run": round(time.perf_counter() - start, 1),
        # wall seconds of every task run so far (writing, training and answering), all runs
        "seconds_total": round(
            sum(r.get("seconds", 0) for r in records if r["kind"] == "arc-task"), 1
        ),
    }
    write_atomic(root / SUMMARY, json.dumps(summary, indent=2) + "\n")
    return summary


def train(cfg, settings, tasks: list[ArcTask], store, records: list[dict], rounds: int, todo: int):
    """The ReST-EM rounds over ARC tasks; returns every log record (old and new)."""
    # Deferred: these load torch, which argument checking and resuming must not wait for.
    from agent.core.runtime import ModelRuntime
    from policies.arc import rest_em
    from policies.arc.ttt import ArcResult

    runtime = ModelRuntime.load(cfg.model, cfg.adapt)

    def run_item(executor, round_, index, task, policy, baseline):
        record, base = rest_em.run_task(
            runtime,
            executor,
            cfg,
            settings,
            round_=round_,
            index=index,
            task=task,
            policy=policy,
            baseline=baseline,
        )
        return record, base, rest_em.baseline_record(index, task.id, base)

    def finish_round(round_: int, version: int) -> None:
        """Finetune the writer on the round's kept (prompt, config) pairs."""
        pairs = [
            (writer_prompt(runtime, rest_em.training_split(tasks[i])[0], settings), raw)
            for i, raw in rest_em.kept_pairs(records, round_)
        ]
        # the writer's prompt is the whole task plus the instruction; room for it and the config
        longest = max((runtime.count_tokens(prompt) for prompt, _ in pairs), default=0)
        commit_round(
            runtime,
            cfg,
            store,
            pairs,
            rest_em.round_stats(records, round_),
            round_=round_,
            version=version,
            cap=longest + 2 * settings.writer_max_new_tokens,
            config=cfg.model_dump(mode="json") | {"arc": settings.model_dump(mode="json")},
            what="config",
        )

    def postfix(round_: int) -> dict:
        stats = rest_em.round_stats(records, round_)
        return {"valid": stats["valid"], "kept": stats["kept"]}

    baselines = {
        r["index"]: ArcResult.from_dict(r["result"]) for r in records if r["kind"] == "arc-baseline"
    }
    return run_rounds(
        runtime,
        cfg,
        store,
        records,
        tasks,
        rounds,
        todo,
        label="ARC ReST-EM",
        unit="task",
        kind="arc-task",
        baselines=baselines,
        run_item=run_item,
        postfix=postfix,
        finish_round=finish_round,
    )


def report(summary: dict, root: Path) -> str:
    lines = [
        "| round | tasks | configs | valid | trained | kept | mean reward | kept reward |",
        "|---|---|---|---|---|---|---|---|",
    ]
    fmt = lambda x: "-" if x is None else f"{x:.3f}"  # noqa: E731
    for s in summary["rounds"]:
        lines.append(
            f"| {s['round']} | {s['tasks']} | {s['candidates']} | {s['valid']} | {s['trained']} "
            f"| {s['kept']} | {fmt(s['candidate_reward'])} | {fmt(s['kept_reward'])} |"
        )
    versions = ", ".join(f"v{v}" for v in summary["versions"]) or "none"
    lines.append(f"\nwriter versions in {root}: {versions}; current: v{summary['current']}")
    return "\n".join(lines)
