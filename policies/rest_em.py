"""ReST-EM for self-edits (SEAL section 3.1): sample, reward, keep the best, finetune the writer.

One round, for every training passage: the current policy samples K self-edits in one batched
call; each is applied by the inner loop from the base model (through an `Executor`); its reward is
the updated model's closed-book result on the passage's questions; the best candidate is kept
(optionally only if it beats the passage-only update); then the policy LoRA is finetuned on the
kept (prompt, self-edit) pairs with the prompt masked out of the loss.

The reward (`policy.reward`): SEAL grades answers, but a 135M model answers ~0 or 1 of a passage's
~5 questions either way, so most candidates tie. "logprob" ranks by the gain in mean gold-answer
log-probability per token over the base model (dense: every gold token counts), breaking ties by
graded contained accuracy; "graded" is SEAL's ranking, with the log-probability gain as tie-break.
The base model's and the passage-only update's results depend on no policy: computed once per
passage and reused by every round.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from agent.core.config import PolicyConfig, SealConfig
from agent.core.errors import SealError
from agent.core.inner_loop import TrainLog, fit, pack, tokenize_sequences
from agent.core.squad import SquadPassage
from policies.executor import Executor, InnerLoopResult, InnerLoopTask
from policies.self_edit import write_self_edits

RewardKey = tuple[float, float]  # (primary, tie-break): compared lexicographically


# ----------------------------------------------------------------------------- reward, selection
def reward_key(result: InnerLoopResult, base: InnerLoopResult, kind: str) -> RewardKey:
    """A candidate's rank after its update, relative to the base model's answers."""
    gain = result.logprob - base.logprob
    if kind == "graded":
        return (result.contained, gain)
    if kind == "logprob":
        return (gain, result.contained)
    raise ValueError(f"unknown reward {kind!r}")


def select_best(
    keys: Sequence[RewardKey], eligible: Sequence[bool], baseline: RewardKey | None
) -> int | None:
    """Index of the best eligible candidate (first among equals), or None when there is none
    or it does not beat `baseline` (None: no baseline to beat)."""
    ranked = [i for i in range(len(keys)) if eligible[i]]
    if not ranked:
        return None
    best = max(ranked, key=lambda i: (keys[i], -i))
    if baseline is not None and not keys[best] > baseline:
        return None
    return best


# ----------------------------------------------------------------------------- one passage
@dataclass(frozen=True)
class Baselines:
    """Policy-independent results of one passage: no update, and the passage-only update."""

    base: InnerLoopResult
    passage: InnerLoopResult | None


def baseline_tasks(index: int, passage: SquadPassage, with_passage: bool) -> list[InnerLoopTask]:
    tasks = [InnerLoopTask(f"p{index}/base", passage.questions, None)]
    if with_passage:
        sequences = (f"{passage.title}\n{passage.context}",)
        tasks.append(InnerLoopTask(f"p{index}/passage", passage.questions, sequences))
    return tasks


def sample_candidates(runtime, cfg: SealConfig, passage: SquadPassage, policy, seed: int):
    """K self-edits from the policy (a version folder, or None for the base model), batched."""

    runtime.reset_adapter(cfg.adapt.seed)  # the knowledge slot holds the last inner loop
    se_cfg = cfg.self_edit.model_copy(
        update={
            "format": cfg.policy.format,
            "num_candidates": cfg.policy.candidates,
            "policy": policy,
        }
    )
    return write_self_edits(runtime, passage.title, passage.context, se_cfg, seed=seed)


def passage_seed(seed: int, round_: int, index: int) -> int:
    return seed * 1_000_003 + round_ * 10_007 + index


def run_passage(
    runtime,
    executor: Executor,
    cfg: SealConfig,
    *,
    round_: int,
    index: int,
    passage: SquadPassage,
    policy,
    baselines: Baselines | None,
) -> tuple[dict, Baselines]:
    """Sample, apply and reward K candidates for one passage; the log record and baselines."""
    edits = sample_candidates(
        runtime, cfg, passage, policy, passage_seed(cfg.policy.seed, round_, index)
    )
    tasks = [
        InnerLoopTask(f"r{round_}/p{index}/c{k}", passage.questions, tuple(e.sequences))
        for k, e in enumerate(edits)
    ]
    if baselines is None:
        extra = baseline_tasks(index, passage, cfg.policy.keep_only_beating_baseline)
        results = executor.map([*extra, *tasks])
        baselines = Baselines(results[0], results[1] if len(extra) == 2 else None)
        results = results[len(extra) :]
    else:
        results = executor.map(tasks)
    kind = cfg.policy.reward
    keys = [reward_key(r, baselines.base, kind) for r in results]
    # A fallback (nothing parsed) trained on the passage alone: nothing there to imitate.
    eligible = [not e.fallback for e in edits]
    bar = None
    if cfg.policy.keep_only_beating_baseline and baselines.passage is not None:
        bar = reward_key(baselines.passage, baselines.base, kind)
    chosen = select_best(keys, eligible, bar)
    record = {
        "kind": "passage",
        "round": round_,
        "index": index,
        "title": passage.title,
        "reward": kind,
        "baseline_key": bar,
        "selected": chosen,
        "candidates": [
            {
                "raw": e.raw,
                "n_items": len(e.items),
                "fallback": e.fallback,
                "result": r.as_dict(),
                "key": list(key),
            }
            for e, r, key in zip(edits, results, keys, strict=True)
        ],
    }
    return record, baselines


def baselines_record(index: int, baselines: Baselines) -> dict:
    return {
        "kind": "baselines",
        "index": index,
        "base": baselines.base.as_dict(),
        "passage": baselines.passage.as_dict() if baselines.passage else None,
    }


def baselines_from_record(record: dict) -> Baselines:
    def result(d: dict | None, key: str) -> InnerLoopResult | None:
        if d is None:
            return None
        return InnerLoopResult(
            key,
            d["contained"],
            d["f1"],
            d["logprob"],
            tuple(d["answers"]),
            d["train_seconds"],
            d["final_loss"],
        )

    i = record["index"]
    return Baselines(
        result(record["base"], f"p{i}/base"), result(record["passage"], f"p{i}/passage")
    )


def kept_pairs(records: Sequence[dict], round_: int) -> list[tuple[int, str]]:
    """(passage index, kept self-edit text) of one round, in passage order."""
    rows = [r for r in records if r["kind"] == "passage" and r["round"] == round_]
    return [
        (r["index"], r["candidates"][r["selected"]]["raw"])
        for r in sorted(rows, key=lambda r: r["index"])
        if r["selected"] is not None
    ]


# ----------------------------------------------------------------------------- policy finetuning
def finetune_policy(
    runtime,
    pairs: Sequence[tuple[str, str]],
    policy: PolicyConfig,
    max_tokens: int,
    on_step: Callable[[float], None] | None = None,
) -> TrainLog:
    """Train the policy slot (as loaded: the previous version, or fresh) on the pairs, the
    prompts masked; `on_step(loss)` after every optimizer step."""
    token_pairs = tokenize_sequences(runtime, pairs, max_tokens)
    if not token_pairs:
        raise SealError("no (prompt, self-edit) pairs to finetune the policy on")
    with runtime.policy_active():
        return fit(
            runtime,
            runtime.policy_parameters(),
            token_pairs,
            pack,
            policy.learning_rate,
            0.0,
            epochs=policy.epochs,
            batch_size=policy.batch_size,
            seed=policy.seed,
            on_step=on_step,
        )


# ----------------------------------------------------------------------------- statistics
def round_stats(records: Sequence[dict], round_: int) -> dict:
    """Reward statistics of one round's candidates and kept self-edits."""
    rows = [r for r in records if r["kind"] == "passage" and r["round"] == round_]
    cands = [c for r in rows for c in r["candidates"]]
    best = [r["candidates"][r["selected"]] for r in rows if r["selected"] is not None]
    mean = lambda xs: round(statistics.fmean(xs), 4) if xs else None  # noqa: E731
    return {
        "round": round_,
        "passages": len(rows),
        "candidates": len(cands),
        "fallbacks": sum(c["fallback"] for c in cands),
        "kept": len(best),
        "candidate_contained": mean([c["result"]["contained"] for c in cands]),
        "candidate_logprob": mean([c["result"]["logprob"] for c in cands]),
        "candidate_reward": mean([c["key"][0] for c in cands]),
        "kept_contained": mean([c["result"]["contained"] for c in best]),
        "kept_reward": mean([c["key"][0] for c in best]),
        "best_of_k_contained": mean(
            [max(c["result"]["contained"] for c in r["candidates"]) for r in rows]
        ),
    }
