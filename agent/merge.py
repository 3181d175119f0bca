"""Merging the knowledge adapter into the base weights: the third consolidation (after one
continual adapter, and per-document adapters combined), checked like any update.

    current version vN on base B --(W += scale * B_lora @ A_lora, in float32)--> base B'
    probes of learned documents (a random sample) must not drop beyond the tolerances
    -> commit B' (stores/bases.py) and a zero adapter on it (kind "merged", parent vN), make it
       current with the update record in one ledger transaction; or
    -> restore B and vN, and record why.

After a merge, later updates train a fresh adapter on B': what was learned no longer competes for
the adapter's rank, and a rollback to a version from before the merge loads the base it needs
(the base follows from the version's base fingerprint, see stores/bases.py).
"""

from __future__ import annotations

import random
import time

import torch

from agent.core.config import SealConfig
from agent.core.errors import SealError
from policies.retention import Check, UpdateResult, decide, record_decision, score_documents
from stores.adapters import BASE
from stores.state import State

DTYPE_NAMES = {torch.float32: "float32", torch.bfloat16: "bfloat16"}  # model.dtype values


def updates_since_merge(state: State, version: int) -> int:
    """Accepted updates on the parent chain of `version` since the last merge (or the start)."""
    count = 0
    while version:
        row = state.ledger.adapter_version(version)
        if row["kind"] == "merged":
            break
        count += 1
        version = row["parent"] or BASE
    return count


def run_base_merge(state: State, runtime, cfg: SealConfig, *, seed: int = 0) -> UpdateResult:
    """Merge the current adapter into the base, check retention, commit or roll back."""
    start = time.perf_counter()
    ledger, adapters = state.ledger, state.adapters
    parent = adapters.current()
    if not updates_since_merge(state, parent):
        raise SealError("nothing to merge: the current version adds nothing to its base")
    adapters.load_into(runtime, parent)
    learned = ledger.documents_with_probes()
    sample = cfg.update.nearest_passages + cfg.update.random_passages
    docs = random.Random(seed).sample(learned, min(sample, len(learned))) if cfg.update.gate else []
    before = score_documents(runtime, state, docs, cfg)

    old_fingerprint, dtype = runtime.fingerprint(), runtime.base_model.dtype
    if cfg.update.merge_dtype == "float32":
        runtime.cast_base(torch.float32)
    originals = runtime.merge_adapter_into_base()
    after = score_documents(runtime, state, docs, cfg)
    old = [Check(d, before[d], after[d]) for d in docs if d in before]
    if runtime.fingerprint() == old_fingerprint:  # bases are told apart by fingerprint
        accept, reason = False, "the merged weights equal the base's at bf16 precision"
    elif cfg.update.gate:
        accept, reason = decide([], old, cfg.update, learns=False)
    else:
        accept, reason = True, "accepted without a retention check (update.gate is off)"
    version = None
    if accept:
        fingerprint = runtime.fingerprint()
        base = state.bases.commit(
            runtime.write_base_files,
            fingerprint=fingerprint,
            lineage=[*runtime.lineage, old_fingerprint],
            merged_version=parent,
            dtype=DTYPE_NAMES[runtime.base_model.dtype],
        )
        runtime.lineage = (*runtime.lineage, old_fingerprint)
        version = adapters.commit(
            runtime.write_adapter_files,
            parent=parent,
            base_fingerprint=fingerprint,
            config=cfg.model_dump(mode="json"),
            note=f"v{parent} merged into base b{base:06d}",
            kind="merged",
        )
        reason = f"merged into base b{base:06d}; {reason}"
    else:
        runtime.cast_base(dtype)
        runtime.restore_base(originals)
        adapters.load_into(runtime, parent)
    seconds = time.perf_counter() - start
    update_id = record_decision(
        state,
        cfg,
        accept=accept,
        reason=reason,
        version=version,
        parent=parent,
        strategy="merge into base",
        before=before,
        after=after,
        new_documents=[],
        old_documents=docs,
        seconds=seconds,
    )
    return UpdateResult(
        "accept" if accept else "rollback",
        reason,
        version,
        parent,
        update_id,
        old=old,
        seconds=seconds,
    )
