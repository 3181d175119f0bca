"""ReST-EM over ARC configs (SEAL section 4.1): sample configs, apply each by test-time training,
keep the best, finetune the writer on it.

For a training task, the last demonstration is held out: the writer sees the others, a config
trains on leave-out tasks built from them, and the reward is the adapted model's answer to the
held-out one. `policy.reward = "graded"` is SEAL's (solved first, the gold log-prob gain over the
untrained model as tie-break); "logprob" ranks by that gain first (dense: a small model solves
~nothing, so SEAL's reward keeps nothing). A config that is refused (bad JSON, out of range, over
the step budget) trains nothing and is never kept. The untrained model's answer is computed once
per task (the baseline) and reused by every round; with `policy.keep_only_beating_baseline`, a
task's best config is kept only if it beats it. The kept (prompt, config) pairs finetune the policy
LoRA with the project's ReST-EM step (policies/rest_em.py) and go to the policy store.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Sequence
from pathlib import Path

from agent.core.config import SealConfig
from policies.arc.grids import ArcTask, Pair
from policies.arc.self_edit import parse_self_edit, write_configs
from policies.arc.settings import ArcSettings
from policies.arc.ttt import ArcResult, ArcTTTTask, plan
from policies.executor import Executor
from policies.rest_em import RewardKey, passage_seed, select_best

MIN_TRAINING_DEMOS = 3  # one held out, and at least two left for leave-one-out tasks


def training_split(task: ArcTask) -> tuple[tuple[Pair, ...], tuple[Pair, ...]]:
    """(demonstrations the config trains on, the held-out demonstration)."""
    return task.train[:-1], task.train[-1:]


def training_tasks(tasks: Sequence[ArcTask], limit: int) -> list[ArcTask]:
    """Tasks with enough demonstrations, fewest cells first; `limit` 0: all of them."""
    usable = sorted((t for t in tasks if len(t.train) >= MIN_TRAINING_DEMOS), key=lambda t: t.cells)
    return usable[: limit or None]


def reward_key(result: ArcResult, base: ArcResult, kind: str) -> RewardKey:
    gain = result.gold_logprob - base.gold_logprob
    if kind == "graded":
        return (result.solved, gain)
    if kind == "logprob":
        return (gain, result.solved)
    raise ValueError(f"unknown reward {kind!r}")


def refusal(
    raw: str, demos: Sequence[Pair], settings: ArcSettings, batch_size: int, seed: int, count
) -> str | None:
    """Why a config would train nothing (checked before it is sent to an executor)."""
    parsed = parse_self_edit(raw, settings)
    if parsed.edit is None:
        return parsed.reason
    return plan(demos, parsed.edit, settings, batch_size, seed, count).refused


def refused_result(key: str, reason: str, untrained: ArcResult) -> ArcResult:
    """A refused config trains nothing: its answers are the untrained model's (greedy decoding
    of the same model gives the same answers, so they are not computed again)."""
    return dataclasses.replace(untrained, key=key, refused=reason, config=None)


def apply_configs(
    runtime,
    executor: Executor,
    cfg: SealConfig,
    settings: ArcSettings,
    *,
    key: str,
    demos: tuple[Pair, ...],
    queries: tuple[Pair, ...],
    raws: Sequence[str],
    seed: int,
    views: int,
    untrained: ArcResult | None,
) -> tuple[list[ArcResult], ArcResult]:
    """Each config's result (refused ones without running), and the untrained model's."""
    reasons = [
        refusal(raw, demos, settings, cfg.adapt.batch_size, seed, runtime.count_tokens)
        for raw in raws
    ]
    todo = [
        ArcTTTTask(f"{key}/c{k}", demos, queries, raw, settings, seed, views)
        for k, (raw, why) in enumerate(zip(raws, reasons, strict=True))
        if why is None
    ]
    if untrained is None:
        todo.insert(0, ArcTTTTask(f"{key}/untrained", demos, queries, None, settings, seed, views))
    ran = iter(executor.map(todo))
    if untrained is None:
        untrained = next(ran)
    results = [
        next(ran) if why is None else refused_result(f"{key}/c{k}", why, untrained)
        for k, why in enumerate(reasons)
    ]
    return results, untrained


def run_task(
    runtime,
    executor: Executor,
    cfg: SealConfig,
    settings: ArcSettings,
    *,
    round_: int,
    index: int,
    task: ArcTask,
    policy: Path | None,
    baseline: ArcResult | None,
) -> tuple[dict, ArcResult]:
    """Sample, apply and reward K configs for one training task; its record and baseline."""
    demos, held_out = training_split(task)
    seed = passage_seed(cfg.policy.seed, round_, index)
    raws = write_configs(runtime, demos, settings, cfg.policy.candidates, policy, seed)
    results, baseline = apply_configs(
        runtime,
        executor,
        cfg,
        settings,
        key=f"r{round_}/t{index}",
        demos=demos,
        queries=held_out,
        raws=raws,
        seed=seed,
        views=settings.reward_views,
        untrained=baseline,
    )
    kind = cfg.policy.reward
    keys = [reward_key(r, baseline, kind) for r in results]
    bar = reward_key(baseline, baseline, kind) if cfg.policy.keep_only_beating_baseline else None
    chosen = select_best(keys, [r.trained for r in results], bar)
    record = {
        "kind": "arc-task",
        "round": round_,
        "index": index,
        "task": task.id,
        "reward": kind,
        "baseline_key": bar,
        "selected": chosen,
        "candidates": [
            {"raw": raw, "result": r.as_dict(), "key": list(k)}
            for raw, r, k in zip(raws, results, keys, strict=True)
        ],
    }
    return record, baseline


def baseline_record(index: int, task_id: str, result: ArcResult) -> dict:
    return {"kind": "arc-baseline", "index": index, "task": task_id, "result": result.as_dict()}


def kept_pairs(records: Sequence[dict], round_: int) -> list[tuple[int, str]]:
    """(task index, kept config text) of one round, in task order."""
    rows = [r for r in records if r["kind"] == "arc-task" and r["round"] == round_]
    return [
        (r["index"], r["candidates"][r["selected"]]["raw"])
        for r in sorted(rows, key=lambda r: r["index"])
        if r["selected"] is not None
    ]


def round_stats(records: Sequence[dict], round_: int) -> dict:
    rows = [r for r in records if r["kind"] == "arc-task" and r["round"] == round_]
    cands = [c for r in rows for c in r["candidates"]]
    kept = [r["candidates"][r["selected"]] for r in rows if r["selected"] is not None]
    mean = lambda xs: round(statistics.fmean(xs), 4) if xs else None  # noqa: E731
    return {
        "round": round_,
        "tasks": len(rows),
        "candidates": len(cands),
        "valid": sum(c["result"]["refused"] is None for c in cands),
        "trained": sum(c["result"]["trained"] for c in cands),
        "kept": len(kept),
        "candidate_solved": mean([c["result"]["solved"] for c in cands]),
        "candidate_partial": mean([c["result"]["partial"] for c in cands]),
        "candidate_reward": mean([c["key"][0] for c in cands]),
        "kept_reward": mean([c["key"][0] for c in kept]),
        "refusals": sorted({c["result"]["refused"] for c in cands if c["result"]["refused"]})[:20],
    }
