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

Both candidates also train a few anchors (policies/anchors.py: everyday questions with the base
model's own answers), and the check scores others, so learned facts do not become the answer to
every question. The retention check and its record are policies/retention.py's, shared with
merges into the base.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from agent.core.config import SealConfig
from agent.core.inner_loop import train_adapter
from agent.merge import run_base_merge, updates_since_merge
from policies.anchors import ANCHOR_DOCUMENT, anchor_sequences, choose_anchors
from policies.replay import choose_replay, replay_count
from policies.retention import (
    Check,
    UpdateResult,
    changed_anchors,
    decide,
    record_decision,
    repairable,
    retention_documents,
    score_documents,
)
from stores.adapters import BASE
from stores.state import State


@dataclass
class NewMaterial:
    """What an update learns: self-edits already in the ledger, and their documents."""

    document_ids: list[int]
    self_edit_ids: list[int]
    sequences: list[str]
    passage_texts: list[str]  # to find the earlier passages most likely to interfere


def _candidate_continual(state, runtime, cfg, material, parent, seed, anchored):
    """Continue training the current adapter on the new self-edits plus a replay sample (and the
    anchors' sequences)."""
    replay = choose_replay(
        state.ledger,
        replay_count(len(material.self_edit_ids), cfg.update.replay_ratio),
        cfg.update,
        seed=seed,
        exclude_documents=material.document_ids,
        runtime=runtime,
    )
    sequences = material.sequences + [s for item in replay for s in item.sequences] + anchored
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


def _candidate_per_document(state, runtime, cfg, material, parent, folder: Path, anchored):
    """A fresh adapter on the new self-edits, combined with the current one's documents."""
    adapters = state.adapters
    # The current adapter's parts: its document adapters, or itself if trained otherwise.
    kind = state.ledger.adapter_version(parent)["kind"] if parent else None
    parts = adapters.components(parent) if kind == "consolidated" else [parent] if parent else []
    log = train_adapter(runtime, material.sequences + anchored, cfg.adapt, reset=True)
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
        retention_documents(
            state, material.document_ids, material.passage_texts, cfg, random.Random(seed)
        )
        if cfg.update.gate
        else []
    )
    checked = [*material.document_ids, *old_docs]
    anchors = choose_anchors(runtime, cfg.eval, cfg.update.anchors, random.Random(seed))
    anchored = anchor_sequences(runtime, cfg.eval, anchors.trained)
    check = cfg.update.check_anchors
    if check is None:  # routed answers: the base model answers everyday questions
        check = cfg.chat.adapter_min_similarity == 0
    checked_anchors = anchors.checked if check else []

    def score() -> dict[int, float]:  # the checked documents, and the checked anchors
        return score_documents(runtime, state, checked, cfg, checked_anchors)

    before = score() if cfg.update.gate else {}
    if ANCHOR_DOCUMENT in before:
        old_docs = [*old_docs, ANCHOR_DOCUMENT]

    with tempfile.TemporaryDirectory(prefix=".candidate-", dir=state.home) as tmp:
        if cfg.update.strategy == "per-document":
            log, replay, n_sequences, strategy, commit = _candidate_per_document(
                state, runtime, cfg, material, parent, Path(tmp), anchored
            )
        else:
            log, replay, n_sequences, strategy, commit = _candidate_continual(
                state, runtime, cfg, material, parent, seed, anchored
            )
        new, old, after, repairs = [], [], {}, 0

        def verdict(new: list[Check], old: list[Check]) -> tuple[bool, str, list]:
            accept, reason = decide(new, old, cfg.update)
            limit, changed = cfg.update.max_anchor_changes, []
            if accept and limit is not None:
                changed = changed_anchors(runtime, checked_anchors, cfg.eval)
                if len(changed) > limit:
                    question, was, now = changed[0]
                    accept = False
                    reason = (
                        f"{len(changed)} of {len(checked_anchors)} everyday answers changed "
                        f"(tolerance {limit}), e.g. {question!r}: {was!r} -> {now!r}"
                    )
            return accept, reason, changed

        if cfg.update.gate:
            after = score()
            new = [Check(d, before[d], after[d]) for d in material.document_ids if d in before]
            old = [Check(d, before[d], after[d]) for d in old_docs if d in before]
            accept, reason, changed = verdict(new, old)
            rounds = cfg.update.repair_rounds if cfg.update.strategy == "continual" else 0
            while not accept and repairs < rounds:
                hurt = repairable(new, old, cfg.update)
                items = ledger.replay_of(hurt) if hurt else []
                if not items and not changed:  # a changed anchor is repaired by the anchors
                    break
                repairs += 1
                sequences = (
                    material.sequences + [s for item in items for s in item.sequences] + anchored
                )
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
                after = score()
                new = [Check(c.document_id, c.before, after[c.document_id]) for c in new]
                old = [Check(c.document_id, c.before, after[c.document_id]) for c in old]
                accept, reason, changed = verdict(new, old)
                reason += f" (after repair round {repairs}: replayed documents {hurt})"
        else:
            accept, reason = True, "accepted without a retention check (update.gate is off)"
        version = commit() if accept else None
    if not accept:
        adapters.load_into(runtime, parent)  # the runtime answers with the current version again

    update_id = record_decision(
        state,
        cfg,
        accept=accept,
        reason=reason,
        version=version,
        parent=parent,
        strategy=strategy,
        before=before,
        after=after,
        new_documents=material.document_ids,
        old_documents=old_docs,
        n_sequences=n_sequences,
        new_self_edits=material.self_edit_ids,
        replay_self_edits=[item.self_edit_id for item in replay],
        losses=log.losses,
        seconds=log.seconds,
    )
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
    if (
        accept
        and cfg.update.merge_every
        and (updates_since_merge(state, version) >= cfg.update.merge_every)
    ):
        result.merge = run_base_merge(state, runtime, cfg, seed=seed)
    return result
