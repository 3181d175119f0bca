"""The update procedure every learning path uses: replay, a candidate adapter, a retention check,
then commit or roll back, with the decision and its evidence in the ledger.

    continual:    current adapter + new self-edits + replayed earlier self-edits --train-->
                  candidate
    per-document: a fresh adapter on the new self-edits, combined with the current adapter's
                  document adapters (update.consolidation) --> candidate
    probes of the new documents must improve; probes of earlier documents (nearest the new ones
    in the passage store, plus a random sample) must not drop beyond the tolerances
    continual: a candidate that learned its new documents but hurt earlier ones is trained
    further on the new self-edits plus the hurt documents' (update.repair_rounds), then checked
    again
    -> commit the candidate as a version (per-document: the document adapter too) and make it
       current (one ledger transaction), or
    -> reload the current adapter and record why the candidate was refused.

Scores are per document: the mean, over its probes, of the answer's log-probability per token
(`update.retention_score = "logprob"`) or of "gold answer contained" in a greedy answer
(`"graded"`).
"""

from __future__ import annotations

import random
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from agent.config import SealConfig, UpdateConfig
from agent.inner_loop import TrainLog, train_adapter
from evals.grading import Question, answer_and_grade, question_prompt
from policies.replay import choose_replay, replay_count
from stores.adapters import BASE
from stores.state import State


@dataclass
class NewMaterial:
    """What an update learns: self-edits already in the ledger, and their documents."""

    document_ids: list[int]
    self_edit_ids: list[int]
    sequences: list[str]
    passage_texts: list[str]  # to find the earlier passages most likely to interfere


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
                f"document {worst.document_id} dropped {-worst.change:.3f} "
                f"(tolerance {cfg.max_passage_drop})"
            )
        if mean_drop > cfg.max_mean_drop:
            return False, (
                f"{len(old)} earlier documents dropped {mean_drop:.3f} on average "
                f"(tolerance {cfg.max_mean_drop})"
            )
        parts.append(
            f"{len(old)} earlier documents: mean change {-mean_drop:+.3f}, worst "
            f"{worst.change:+.3f} (document {worst.document_id})"
        )
    return True, "; ".join(parts) or "no earlier documents to check"


def _repairable(new: Sequence[Check], old: Sequence[Check], cfg: UpdateConfig) -> list[int]:
    """The earlier documents a repair round replays: every checked one that dropped, when the
    candidate did learn its new documents (a repair cannot help a candidate that learned
    nothing)."""
    if new and _mean([c.change for c in new]) <= cfg.min_new_gain:
        return []
    return [c.document_id for c in old if c.change < 0]


def retention_documents(
    state: State, material: NewMaterial, cfg: SealConfig, rng: random.Random
) -> list[int]:
    """Earlier documents to check: the nearest to the new passages, plus a random sample."""
    exclude = set(material.document_ids)
    with_probes = [d for d in state.ledger.documents_with_probes() if d not in exclude]
    if not with_probes:
        return []
    eligible = set(with_probes)
    chosen: list[int] = []
    wanted = cfg.update.nearest_passages
    for text in material.passage_texts if wanted else []:
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


def score_documents(runtime, state: State, documents: Sequence[int], cfg: SealConfig):
    """Mean probe score per document under the runtime's current adapter."""
    probes = {d: state.ledger.probes(d)[: cfg.update.probes_per_passage] for d in documents}
    flat = [(d, Question(p["question"], p["answer"])) for d, ps in probes.items() for p in ps]
    if not flat:
        return {}
    questions = [q for _, q in flat]
    if cfg.update.retention_score == "graded":
        values = [g.contained for g in answer_and_grade(runtime, questions, cfg.eval)]
    else:
        prompts = [question_prompt(runtime, q.question, cfg.eval) for q in questions]
        scores = runtime.score(prompts, [q.answer for q in questions], cfg.eval.answer_batch_size)
        values = [s.mean_logprob for s in scores]
    per_doc: dict[int, list[float]] = {}
    for (d, _), v in zip(flat, values, strict=True):
        per_doc.setdefault(d, []).append(v)
    return {d: _mean(vs) for d, vs in per_doc.items()}


def evidence(
    cfg: SealConfig, scores: dict[int, float], new: Sequence[int], old: Sequence[int]
) -> dict:
    """Scores as the ledger keeps them: by role (new or earlier document), then document."""
    split = {"new": new, "old": old}
    return {"score": cfg.update.retention_score} | {
        role: {str(d): scores[d] for d in docs if d in scores} for role, docs in split.items()
    }


def _candidate_continual(state, runtime, cfg, material, parent, seed):
    """Continue training the current adapter on the new self-edits plus a replay sample."""
    replay = choose_replay(
        state.ledger,
        replay_count(len(material.self_edit_ids), cfg.update.replay_ratio),
        cfg.update,
        seed=seed,
        exclude_documents=material.document_ids,
        runtime=runtime,
    )
    sequences = material.sequences + [s for item in replay for s in item.sequences]
    log = train_adapter(runtime, sequences, cfg.adapt, reset=parent == BASE)

    def commit() -> int:
        return state.adapters.commit(
            runtime.write_adapter_files,
            parent=parent,
            base_fingerprint=runtime.fingerprint(),
            config=cfg.model_dump(mode="json"),
            note=f"documents {', '.join(map(str, material.document_ids))}",
        )

    strategy = f"continual, replay {cfg.update.replay_policy} x{cfg.update.replay_ratio}"
    return log, replay, len(sequences), strategy, commit


def _candidate_per_document(state, runtime, cfg, material, parent, folder: Path):
    """A fresh adapter on the new self-edits, combined with the current one's documents."""
    adapters = state.adapters
    # The current adapter's parts: its document adapters, or itself if trained otherwise.
    kind = state.ledger.adapter_version(parent)["kind"] if parent else None
    parts = adapters.components(parent) if kind == "consolidated" else [parent] if parent else []
    log = train_adapter(runtime, material.sequences, cfg.adapt, reset=True)
    document = runtime.save_adapter(folder / "document")
    runtime.combine_adapters(
        [*(adapters.path(v) for v in parts), document],
        [1.0] * (len(parts) + 1),
        cfg.update.consolidation,
        cfg.update.consolidation_density,
    )

    def commit() -> int:
        doc_version = adapters.commit(
            lambda f: [shutil.copy2(p, f / p.name) for p in document.iterdir()],
            parent=None,
            base_fingerprint=runtime.fingerprint(),
            config=cfg.model_dump(mode="json"),
            note=f"document adapter: documents {', '.join(map(str, material.document_ids))}",
            kind="document",
        )
        return adapters.commit(
            runtime.write_adapter_files,
            parent=parent,
            base_fingerprint=runtime.fingerprint(),
            config=cfg.model_dump(mode="json"),
            note=f"{cfg.update.consolidation} of versions {[*parts, doc_version]}",
            kind="consolidated",
            components=[*parts, doc_version],
        )

    strategy = f"per-document, {cfg.update.consolidation} of {len(parts) + 1} adapters"
    return log, [], len(material.sequences), strategy, commit


def run_update(
    state: State, runtime, cfg: SealConfig, material: NewMaterial, *, seed: int = 0
) -> UpdateResult:
    """Train a candidate (by `update.strategy`), check it, commit it or roll back."""
    start = time.perf_counter()
    ledger, adapters = state.ledger, state.adapters
    parent = adapters.current()
    adapters.load_into(runtime, parent)
    old_docs = (
        retention_documents(state, material, cfg, random.Random(seed)) if cfg.update.gate else []
    )
    checked = [*material.document_ids, *old_docs]
    before = score_documents(runtime, state, checked, cfg) if cfg.update.gate else {}

    with tempfile.TemporaryDirectory(prefix=".candidate-", dir=state.home) as tmp:
        if cfg.update.strategy == "per-document":
            log, replay, n_sequences, strategy, commit = _candidate_per_document(
                state, runtime, cfg, material, parent, Path(tmp)
            )
        else:
            log, replay, n_sequences, strategy, commit = _candidate_continual(
                state, runtime, cfg, material, parent, seed
            )
        new, old, after, repairs = [], [], {}, 0
        if cfg.update.gate:
            after = score_documents(runtime, state, checked, cfg)
            new = [Check(d, before[d], after[d]) for d in material.document_ids if d in before]
            old = [Check(d, before[d], after[d]) for d in old_docs if d in before]
            accept, reason = decide(new, old, cfg.update)
            rounds = cfg.update.repair_rounds if cfg.update.strategy == "continual" else 0
            while not accept and repairs < rounds:
                hurt = _repairable(new, old, cfg.update)
                items = ledger.replay_of(hurt) if hurt else []
                if not items:
                    break
                repairs += 1
                sequences = material.sequences + [s for item in items for s in item.sequences]
                more = train_adapter(
                    runtime,
                    sequences,
                    cfg.adapt.model_copy(update={"epochs": cfg.update.repair_epochs}),
                    reset=False,
                )
                log.losses += more.losses
                log.seconds += more.seconds
                n_sequences += len(sequences)
                known = {item.self_edit_id for item in replay}
                replay += [item for item in items if item.self_edit_id not in known]
                after = score_documents(runtime, state, checked, cfg)
                new = [Check(c.document_id, c.before, after[c.document_id]) for c in new]
                old = [Check(c.document_id, c.before, after[c.document_id]) for c in old]
                accept, reason = decide(new, old, cfg.update)
                reason += f" (after repair round {repairs}: replayed documents {hurt})"
        else:
            accept, reason = True, "accepted without a retention check (update.gate is off)"
        version = commit() if accept else None
    if not accept:
        adapters.load_into(runtime, parent)  # the runtime answers with the current version again

    with ledger.transaction():
        update_id = ledger.record_update(
            decision="accept" if accept else "rollback",
            reason=reason,
            version=version,
            parent_version=parent or None,
            n_sequences=n_sequences,
            new_self_edits=material.self_edit_ids,
            replay_self_edits=[item.self_edit_id for item in replay],
            strategy=strategy,
            losses=log.losses,
            seconds=log.seconds,
            retention_before=evidence(cfg, before, material.document_ids, old_docs),
            retention_after=evidence(cfg, after, material.document_ids, old_docs),
        )
        if version is not None:
            adapters.set_current(version)
        else:
            for doc in material.document_ids:
                ledger.set_document_status(doc, "rejected", f"update {update_id}: {reason}")
    result = UpdateResult(
        "accept" if accept else "rollback",
        reason,
        version,
        parent,
        update_id,
        new,
        old,
        len(replay),
        log,
        time.perf_counter() - start,
        repairs=repairs,
    )
    if accept and cfg.update.merge_every:
        from agent.merge import run_base_merge, updates_since_merge

        if updates_since_merge(state, version) >= cfg.update.merge_every:
            result.merge = run_base_merge(state, runtime, cfg, seed=seed)
    return result
