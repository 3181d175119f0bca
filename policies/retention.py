"""The retention check every change to the model's knowledge passes: an update (agent/update.py)
or a merge into the base weights (agent/merge.py).

Scores are per document: the mean, over its probes, of the answer's log-probability per token
(`update.retention_score = "logprob"`) or of "gold answer contained" in a greedy answer
(`"graded"`). The new documents' probes must improve; the earlier documents checked (nearest the
new ones in the passage store, plus a random sample) must not drop beyond the tolerances. The
decision and the scores behind it are recorded in the ledger, in the transaction that makes the
checked version current.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from agent.core.answering import (
    Question,
    answer_and_grade,
    answer_head,
    answer_logprobs,
    greedy_answers,
    question_prompt,
    token_f1,
)
from agent.core.config import EvalConfig, SealConfig, UpdateConfig
from agent.core.inner_loop import TrainLog
from policies.anchors import ANCHOR_DOCUMENT
from stores.state import State


@dataclass(frozen=True)
class Check:
    document_id: int
    before: float
    after: float

    @property
    def change(self) -> float:
        return self.after - self.before


@dataclass
class UpdateResult:
    decision: str  # "accept" | "rollback"
    reason: str
    version: int | None  # the committed version; None when rolled back
    parent: int
    update_id: int
    new: list[Check] = field(default_factory=list)
    old: list[Check] = field(default_factory=list)
    n_replay: int = 0
    log: TrainLog | None = None
    seconds: float = 0.0
    merge: UpdateResult | None = None  # a merge into the base that followed (update.merge_every)
    repairs: int = 0  # repair rounds the candidate needed (update.repair_rounds)


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs)


def _named(document_id: int) -> str:
    return "the anchor questions" if document_id == ANCHOR_DOCUMENT else f"document {document_id}"


def decide(
    new: Sequence[Check], old: Sequence[Check], cfg: UpdateConfig, *, learns: bool = True
) -> tuple[bool, str]:
    """The retention gate's rule, a pure function of the scores: (accept, reason). `learns`:
    the candidate learned new documents (a merge into the base learns none)."""
    parts = []
    if new:
        gain = _mean([c.change for c in new])
        if gain <= cfg.min_new_gain:
            return False, f"new documents did not improve (change {gain:+.3f})"
        parts.append(f"new documents {gain:+.3f}")
    elif learns:
        parts.append("no probes for the new documents")
    if old:
        worst = min(old, key=lambda c: c.change)
        mean_drop = -_mean([c.change for c in old])
        if -worst.change > cfg.max_passage_drop:
            return False, (
                f"{_named(worst.document_id)} dropped {-worst.change:.3f} "
                f"(tolerance {cfg.max_passage_drop})"
            )
        if mean_drop > cfg.max_mean_drop:
            return False, (
                f"{len(old)} earlier documents dropped {mean_drop:.3f} on average "
                f"(tolerance {cfg.max_mean_drop})"
            )
        parts.append(
            f"{len(old)} earlier documents: mean change {-mean_drop:+.3f}, worst "
            f"{worst.change:+.3f} ({_named(worst.document_id)})"
        )
    return True, "; ".join(parts) or "no earlier documents to check"


def repairable(new: Sequence[Check], old: Sequence[Check], cfg: UpdateConfig) -> list[int]:
    """The earlier documents a repair round replays: every checked one that dropped, when the
    candidate did learn its new documents (a repair cannot help a candidate that learned
    nothing)."""
    if new and _mean([c.change for c in new]) <= cfg.min_new_gain:
        return []
    return [c.document_id for c in old if c.change < 0 and c.document_id != ANCHOR_DOCUMENT]


def retention_documents(
    state: State,
    document_ids: Sequence[int],
    passage_texts: Sequence[str],
    cfg: SealConfig,
    rng: random.Random,
) -> list[int]:
    """Earlier documents to check: the nearest to the new passages, plus a random sample."""
    exclude = set(document_ids)
    with_probes = [d for d in state.ledger.documents_with_probes() if d not in exclude]
    if not with_probes:
        return []
    eligible = set(with_probes)
    chosen: list[int] = []
    wanted = cfg.update.nearest_passages
    for text in passage_texts if wanted else []:
        hits = state.passages.query(
            cfg.store.namespace, text, k=wanted + len(chosen), exclude_document_ids=exclude
        )
        for hit in hits:
            if hit.document_id in eligible and hit.document_id not in chosen:
                chosen.append(hit.document_id)
    chosen = chosen[:wanted]
    rest = [d for d in with_probes if d not in chosen]
    chosen += rng.sample(rest, min(cfg.update.random_passages, len(rest)))
    return chosen


def score_documents(
    runtime,
    state: State,
    documents: Sequence[int],
    cfg: SealConfig,
    anchors: Sequence[tuple[str, str]] = (),
):
    """Mean probe score per document under the runtime's current adapter; with `anchors`
    (question, answer) pairs, their mean score too, as document ANCHOR_DOCUMENT."""
    probes = {d: state.ledger.probes(d)[: cfg.update.probes_per_passage] for d in documents}
    titles = {d: state.ledger.document(d)["title"] or "" for d in probes}
    flat = [
        (d, Question(p["question"], p["answer"], titles[d])) for d, ps in probes.items() for p in ps
    ] + [(ANCHOR_DOCUMENT, Question(q, a)) for q, a in anchors]
    if not flat:
        return {}
    questions = [q for _, q in flat]
    if cfg.update.retention_score == "graded":
        values = [g.contained for g in answer_and_grade(runtime, questions, cfg.eval)]
    else:
        values = answer_logprobs(runtime, questions, cfg.eval)
    per_doc: dict[int, list[float]] = {}
    for (d, _), v in zip(flat, values, strict=True):
        per_doc.setdefault(d, []).append(v)
    return {d: _mean(vs) for d, vs in per_doc.items()}


ANCHOR_F1 = 0.5  # an everyday answer whose head shares less than this with the base's changed


def changed_anchors(
    runtime, anchors: Sequence[tuple[str, str]], asking: EvalConfig
) -> list[tuple[str, str, str]]:
    """The anchors whose greedy answer under the current adapter no longer says what the base
    model said (token F1 of the two answers' heads below ANCHOR_F1): (question, base, now).

    The log-probability of the base's answer can stay within the tolerances while the answer
    itself changes ("What is the capital of Italy?" -> "Lyon"): this asks."""
    if not anchors:
        return []
    prompts = [question_prompt(runtime, q, asking) for q, _ in anchors]
    nows = greedy_answers(runtime, prompts, asking)
    return [
        (q, base, now)
        for (q, base), now in zip(anchors, nows, strict=True)
        if token_f1(answer_head(now), answer_head(base)) < ANCHOR_F1
    ]


def evidence(
    cfg: SealConfig, scores: dict[int, float], new: Sequence[int], old: Sequence[int]
) -> dict:
    """Scores as the ledger keeps them: by role (new or earlier document), then document."""
    split = {"new": new, "old": old}
    return {"score": cfg.update.retention_score} | {
        role: {str(d): scores[d] for d in docs if d in scores} for role, docs in split.items()
    }


def record_decision(
    state: State,
    cfg: SealConfig,
    *,
    accept: bool,
    reason: str,
    version: int | None,
    parent: int,
    strategy: str,
    before: dict[int, float],
    after: dict[int, float],
    new_documents: Sequence[int],
    old_documents: Sequence[int],
    n_sequences: int = 0,
    new_self_edits: Sequence[int] = (),
    replay_self_edits: Sequence[int] = (),
    losses: Sequence[float] = (),
    seconds: float = 0.0,
) -> int:
    """Record a checked change in one ledger transaction: the update row with its evidence, and
    either the new current version or the new documents marked rejected. Returns the update id."""
    ledger = state.ledger
    with ledger.transaction():
        update_id = ledger.record_update(
            decision="accept" if accept else "rollback",
            reason=reason,
            version=version,
            parent_version=parent or None,
            n_sequences=n_sequences,
            new_self_edits=list(new_self_edits),
            replay_self_edits=list(replay_self_edits),
            strategy=strategy,
            losses=list(losses),
            seconds=seconds,
            retention_before=evidence(cfg, before, new_documents, old_documents),
            retention_after=evidence(cfg, after, new_documents, old_documents),
        )
        if version is not None:
            state.adapters.set_current(version)
        else:
            for doc in new_documents:
                ledger.set_document_status(doc, "rejected", f"update {update_id}: {reason}")
    return update_id
