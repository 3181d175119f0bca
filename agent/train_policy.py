"""`seal train-policy`: ReST-EM rounds that teach the model to write better self-edits.

    seal train-policy ../shared/data/squad/train.json --out runs/policy \
        --set policy.rounds=2 --set policy.passages=12 --set policy.candidates=3

setup (config, data, policy store, log) -> run (rounds of policies/rest_em.py, through an
executor) -> report (reward statistics per round). Round r samples with policy version r-1 (0:
the model itself) and writes version r to the store (`--out`, else policy.store, else
<home>/policies). Every passage's record (each candidate with its reward) is appended to
`log.jsonl` as it finishes, so an interrupted run resumes at the next passage.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from tqdm import tqdm

from agent.core.config import SealConfig
from agent.core.errors import SealError
from agent.core.io import append_jsonl, read_jsonl, write_atomic
from agent.core.squad import load_squad
from policies.distill import read_teacher_pairs
from policies.self_edit import get_format, self_edit_prompt
from stores.policies import PolicyStore

LOG = "log.jsonl"
CONFIG = "config.json"
SUMMARY = "summary.json"


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument(
        "data", type=Path, nargs="?", help="SQuAD-format JSON file of training passages"
    )
    ap.add_argument(
        "--out", type=Path, help="policy store and log (default: policy.store or HOME/policies)"
    )
    ap.add_argument(
        "--distill",
        type=Path,
        nargs="+",
        metavar="FILE",
        help="instead of ReST-EM: teach the policy the self-edits stronger models wrote "
        "(SEAL's published .json/.jsonl files); writes version 1, which later ReST-EM rounds "
        "in the same store start from",
    )


def run_config(cfg: SealConfig, data: Path) -> dict:
    """What a resumed run must share with the run it continues (policy.rounds may grow)."""
    return {
        "data": str(data.resolve()),
        # model.threads changes speed, not results: a run may resume with another count.
        **cfg.model_dump(
            mode="json",
            include={"model", "adapt", "self_edit", "eval"},
            exclude={"model": {"threads"}},
        ),
        "policy": cfg.policy.model_dump(
            mode="json", exclude={"rounds", "executor", "ray_address", "ray_workers", "store"}
        ),
    }


def check_resumable(root: Path, config: dict) -> None:
    path = root / CONFIG
    if not path.exists():
        return
    saved = json.loads(path.read_text(encoding="utf-8"))
    diff = [k for k in config if saved.get(k) != config[k]]
    if diff:
        raise SealError(
            f"{root} holds a policy run with other settings ({', '.join(diff)}); use another "
            "--out, or delete it to start over"
        )


def run_train_policy(args: argparse.Namespace, cfg: SealConfig, home: Path) -> int:
    # ---- setup: everything a user can get wrong is checked before the model loads
    if isinstance(cfg.self_edit.policy, Path):
        raise SealError(
            "self_edit.policy names a folder: train-policy samples with its own versions"
        )
    root = Path(args.out or cfg.policy.store or home / "policies").expanduser()
    if args.distill:
        if args.data is not None:
            raise SealError("give either --distill FILE... or a data file for ReST-EM, not both")
        return run_distill(args.distill, cfg, root)
    if args.data is None:
        raise SealError("give a SQuAD-format data file of training passages (or --distill FILE)")
    passages = load_squad(args.data)
    passages = passages[: cfg.policy.passages or None]
    store, records, finished, todo = open_run(
        root, run_config(cfg, args.data), "passage", passages, cfg
    )
    rounds, origin = cfg.policy.rounds, store.origin()
    print(
        f"ReST-EM: {rounds} rounds x {len(passages)} passages x K={cfg.policy.candidates}, "
        f"reward {cfg.policy.reward}, executor {cfg.policy.executor}, from "
        f"{'the distilled writer' if origin else 'the model itself'}; {todo} passage runs to do "
        f"-> {root}",
        file=sys.stderr,
    )

    # ---- run
    start = time.perf_counter()
    if todo or len(finished) < rounds:
        records = train(cfg, passages, store, records, rounds, todo)

    # ---- report
    from policies.rest_em import round_stats  # deferred: loads torch

    summary = {
        "rounds": [round_stats(records, r) for r in range(1, rounds + 1)],
        "versions": store.versions(),
        "current": store.current(),
        "seconds_this_run": round(time.perf_counter() - start, 1),
    }
    write_atomic(root / SUMMARY, json.dumps(summary, indent=2) + "\n")
    print(report(summary, root))
    return 0


def open_run(root: Path, config: dict, kind: str, items: Sequence, cfg: SealConfig):
    """A ReST-EM run's folder, opened to start or resume: the settings checked against the run it
    continues and saved, the store cleaned of half-written versions, the log read. Returns the
    store, the log's records, the rounds already committed, and the item runs left to do."""
    root.mkdir(parents=True, exist_ok=True)
    check_resumable(root, config)
    write_atomic(root / CONFIG, json.dumps(config, indent=2) + "\n")
    store = PolicyStore(root)
    store.clean()
    records = list(read_jsonl(root / LOG))
    rounds, origin = range(1, cfg.policy.rounds + 1), store.origin()
    done = {(r["round"], r["index"]) for r in records if r["kind"] == kind}
    finished = [r for r in rounds if origin + r in store.versions()]
    todo = sum(
        1 for r in rounds for i in range(len(items)) if r not in finished and (r, i) not in done
    )
    return store, records, finished, todo


def run_distill(files: list[Path], cfg: SealConfig, root: Path) -> int:
    """Warm-start a policy store with a writer taught on teacher self-edits: version 1 (round
    0). Every tenth passage's pairs are held out, and the mean log-probability per token of
    their completions under the policy, before and after, is the evidence it learned."""
    pairs = read_teacher_pairs(files)
    store = PolicyStore(root)
    if store.versions():
        raise SealError(
            f"{root} already holds policy versions {store.versions()}; distillation starts a "
            "store: use another --out"
        )
    contexts = list(dict.fromkeys(p.context for p in pairs))
    held_out = set(contexts[9::10]) if len(contexts) > 1 else set()
    train_pairs = [p for p in pairs if p.context not in held_out]
    test_pairs = [p for p in pairs if p.context in held_out]
    print(
        f"distillation: {len(train_pairs)} teacher self-edits of {len(contexts) - len(held_out)} "
        f"passages ({', '.join(sorted({p.format for p in pairs}))}), {len(test_pairs)} held out "
        f"-> {root}",
        file=sys.stderr,
    )
    # Deferred: these load torch, which reading and checking the files must not wait for.
    from agent.core.runtime import ModelRuntime
    from policies import rest_em

    runtime = ModelRuntime.load(cfg.model, cfg.adapt)
    render = lambda p: self_edit_prompt(  # noqa: E731 - our writer's prompt, not SEAL's
        runtime, get_format(p.format), p.title, p.context, cfg.self_edit
    )

    def held_out_logprob() -> float | None:
        if not test_pairs:
            return None
        with runtime.policy_active():
            scores = runtime.score(
                [render(p) for p in test_pairs], [p.completion for p in test_pairs]
            )
        return round(sum(s.logprob for s in scores) / sum(s.n_tokens for s in scores), 4)

    runtime.reset_policy(cfg.policy)
    before = held_out_logprob()
    steps = cfg.policy.epochs * -(-len(train_pairs) // cfg.policy.batch_size)
    with tqdm(total=steps, desc="distillation", unit="step", dynamic_ncols=True) as bar:
        log = rest_em.finetune_policy(
            runtime,
            [(render(p), p.completion) for p in train_pairs],
            cfg.policy,
            cfg.adapt.max_seq_tokens,
            on_step=lambda loss: (bar.update(), bar.set_postfix(loss=f"{loss:.3f}")),
        )
    after = held_out_logprob()
    stats = {
        "distilled_from": sorted({p.source for p in pairs}),
        "pairs": len(train_pairs),
        "passages": len(contexts) - len(held_out),
        "held_out_pairs": len(test_pairs),
        "held_out_logprob_before": before,
        "held_out_logprob_after": after,
        "train": log.as_dict(),
    }
    store.commit(
        runtime.write_policy_files,
        version=1,
        parent=0,
        base_fingerprint=runtime.fingerprint(),
        config=cfg.model_dump(mode="json"),
        stats=stats,
        round_=0,
    )
    store.set_current(1)
    write_atomic(root / "distill.json", json.dumps(stats, indent=2) + "\n")
    print(
        f"distilled writer: version 1 in {root} ({log.steps} steps, {log.seconds:.0f} s); "
        f"held-out teacher completions {before} -> {after} nats per token\n"
        f"use it: --set self_edit.policy={store.path(1)}; ReST-EM in the same --out starts from it"
    )
    return 0


def train(cfg: SealConfig, passages, store, records: list[dict], rounds: int, todo: int):
    """The ReST-EM rounds over passages; returns every log record (old and new)."""
    # Deferred: these load torch, which argument checking and resuming must not wait for.
    from agent.core.runtime import ModelRuntime
    from policies import rest_em

    runtime = ModelRuntime.load(cfg.model, cfg.adapt)
    fmt = get_format(cfg.policy.format)

    def run_item(executor, round_, index, passage, policy, baseline):
        record, base = rest_em.run_passage(
            runtime,
            executor,
            cfg,
            round_=round_,
            index=index,
            passage=passage,
            policy=policy,
            baselines=baseline,
        )
        return record, base, rest_em.baselines_record(index, base)

    def finish_round(round_: int, version: int) -> None:
        pairs = [
            (
                self_edit_prompt(
                    runtime, fmt, passages[i].title, passages[i].context, cfg.self_edit
                ),
                raw,
            )
            for i, raw in rest_em.kept_pairs(records, round_)
        ]
        stats = rest_em.round_stats(records, round_)
        commit_round(
            runtime,
            cfg,
            store,
            pairs,
            stats,
            round_=round_,
            version=version,
            cap=cfg.adapt.max_seq_tokens,
            config=cfg.model_dump(mode="json"),
            what="self-edit",
        )

    baselines = {
        r["index"]: rest_em.baselines_from_record(r) for r in records if r["kind"] == "baselines"
    }

    def postfix(round_: int) -> dict:
        stats = rest_em.round_stats(records, round_)
        return {"kept": stats["kept"], "reward": stats["candidate_reward"]}

    return run_rounds(
        runtime,
        cfg,
        store,
        records,
        passages,
        rounds,
        todo,
        label="ReST-EM",
        unit="passage",
        kind="passage",
        baselines=baselines,
        run_item=run_item,
        postfix=postfix,
        finish_round=finish_round,
        origin=store.origin(),
    )


def run_rounds(
    runtime,
    cfg: SealConfig,
    store: PolicyStore,
    records: list[dict],
    items: Sequence,
    rounds: int,
    todo: int,
    *,
    label: str,
    unit: str,
    kind: str,
    baselines: dict,
    run_item: Callable,
    postfix: Callable[[int], dict],
    finish_round: Callable[[int, int], None],
    origin: int = 0,
) -> list[dict]:
    """ReST-EM's rounds, for passages and for ARC tasks alike. Round r samples with policy
    version origin + r - 1 and `finish_round(r, origin + r)` commits the next. Each item's
    record (of `kind`) is appended to log.jsonl as it finishes, so an interrupted run resumes
    at the next item; `run_item(executor, round, index, item, policy, baseline)` returns the
    record, the item's baseline and the baseline's log line (written once per item). Returns
    every record, old and new."""
    from policies.executor import make_executor  # deferred: loads torch

    fingerprint = runtime.fingerprint()
    for version in store.versions():
        store.verify(version, fingerprint)
    done = {(r["round"], r["index"]) for r in records if r["kind"] == kind}
    log_path = store.root / LOG
    executor = make_executor(cfg, runtime)
    bar = tqdm(total=todo, desc=label, unit=unit, dynamic_ncols=True)
    try:
        for round_ in range(1, rounds + 1):
            version = origin + round_
            if version in store.versions():
                continue
            policy = store.folder(version - 1)
            for index, item in enumerate(items):
                if (round_, index) in done:
                    continue
                bar.set_description(f"{label} round {round_}/{rounds}")
                start = time.perf_counter()
                record, base, line = run_item(
                    executor, round_, index, item, policy, baselines.get(index)
                )
                record["seconds"] = round(time.perf_counter() - start, 1)
                if index not in baselines:
                    baselines[index] = base
                    append_jsonl(log_path, line)
                    records.append(line)
                append_jsonl(log_path, record)
                records.append(record)
                bar.set_postfix(postfix(round_))
                bar.update()
            finish_round(round_, version)
    finally:
        bar.close()
        executor.close()
    return records


def commit_round(
    runtime,
    cfg: SealConfig,
    store: PolicyStore,
    pairs: list[tuple[str, str]],
    stats: dict,
    *,
    round_: int,
    version: int,
    cap: int,
    config: dict,
    what: str,
) -> None:
    """Finetune the policy (continuing version - 1) on the round's kept (prompt, completion)
    pairs, prompts masked, and commit it as `version`; with no pair kept it carries over."""
    from policies.rest_em import finetune_policy  # deferred: loads torch

    parent = version - 1
    if parent:
        runtime.load_policy(store.folder(parent))
    else:
        runtime.reset_policy(cfg.policy)
    if pairs:
        stats["train"] = finetune_policy(runtime, pairs, cfg.policy, cap).as_dict()
    else:  # nothing beat the baseline: the policy carries over unchanged
        print(f"round {round_}: no {what} was kept; the policy is unchanged", file=sys.stderr)
    store.commit(
        runtime.write_policy_files,
        version=version,
        parent=parent,
        base_fingerprint=runtime.fingerprint(),
        config=config,
        stats=stats,
        round_=round_,
    )
    store.set_current(version)
    runtime.load_policy(None)


def report(summary: dict, root: Path) -> str:
    lines = [
        "| round | passages | candidates | kept | candidate contained | candidate reward "
        "| kept reward | best-of-K contained |",
        "|---|---|---|---|---|---|---|---|",
    ]
    fmt = lambda x: "-" if x is None else f"{x:.3f}"  # noqa: E731
    for s in summary["rounds"]:
        lines.append(
            f"| {s['round']} | {s['passages']} | {s['candidates']} | {s['kept']} "
            f"| {fmt(s['candidate_contained'])} | {fmt(s['candidate_reward'])} "
            f"| {fmt(s['kept_reward'])} | {fmt(s['best_of_k_contained'])} |"
        )
    versions = ", ".join(f"v{v}" for v in summary["versions"]) or "none"
    lines.append(f"\npolicy versions in {root}: {versions}; current: v{summary['current']}")
    if summary["current"]:
        lines.append(f"use it: --set self_edit.policy={root}/versions/v{summary['current']:04d}")
    return "\n".join(lines)
