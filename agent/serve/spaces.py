"""One user's namespace: a seal state folder of their own (HOME/users/NAME/), holding their
documents, passages, adapter lineage, compute budget (the gate counts the updates of their own
ledger) and history. Nothing here takes a user from the request: the caller passes the user the
API key names, and every path is that user's folder, so no endpoint can reach another's memory.

Public document ids carry a tag of their user ("doc-1a2b3c4d-7"): an id of another user's
document is unknown here (404), not another document of the asker's that happens to share the
number.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agent.core.config import SealConfig
from agent.core.errors import SealError
from agent.documents import Document
from agent.serve.users import user_home
from stores.ledger import Ledger
from stores.state import LEDGER, State

BUDGET_WINDOW_S = 3600.0  # chat.update_minutes_per_hour is a rolling hour (agent/graph/nodes.py)


class NotFound(SealError):
    """Something the user asked for does not exist in their namespace (HTTP 404)."""


class Busy(SealError):
    """Too much of this user's work is waiting (HTTP 429)."""


class Conflict(SealError):
    """The request cannot run now (an update of this user is running or queued; HTTP 409)."""


def user_tag(user: str) -> str:
    return hashlib.sha256(user.encode("utf-8")).hexdigest()[:8]


def public_id(user: str, document_id: int) -> str:
    return f"doc-{user_tag(user)}-{document_id}"


def parse_id(user: str, public: str) -> int:
    """The user's own document number of `public`; anything else is not found (the same error
    for another user's id and for an id nobody has)."""
    prefix = f"doc-{user_tag(user)}-"
    number = public.removeprefix(prefix)
    if not public.startswith(prefix) or not number.isdigit() or len(number) > 12:
        raise NotFound(f"no document {public!r}")
    return int(number)


def open_space(home: Path, user: str, cfg: SealConfig) -> State:
    """The user's writer state, created on first use; its passage store is opened here, in the
    caller's thread, and shared with the update worker."""
    state = State.open(
        user_home(home, user), near_duplicate_similarity=cfg.store.near_duplicate_similarity
    )
    _ = state.passages
    return state


def store_documents(
    state: State, cfg: SealConfig, user: str, documents: list[Document], source: str
) -> tuple[list[dict], list[dict]]:
    """Store documents in the user's ledger, passages and vectors, as the graph's ingest node
    does for /feed. Returns (refs of the documents for the gate, one result per document)."""
    refs, results = [], []
    for doc in documents:
        stored = state.add_document(
            doc.text,
            source=source,
            namespace=cfg.store.namespace,
            passage_words=cfg.store.passage_words,
            uri=doc.uri,
            title=doc.title,
        )
        if stored.duplicate_of is not None:
            row = state.ledger.document(stored.duplicate_of)
            results.append({"id": public_id(user, row["id"]), "duplicate": True})
            if row["status"] in ("stored", "self_edited", "rejected"):
                passages = len(state.ledger.passages(row["id"]))
                refs.append(
                    {"id": row["id"], "title": row["title"] or doc.title, "passages": passages}
                )
            continue
        results.append({"id": public_id(user, stored.document_id), "duplicate": False})
        refs.append(
            {"id": stored.document_id, "title": doc.title, "passages": len(stored.passage_ids)}
        )
    return refs, results


@contextlib.contextmanager
def read_ledger(home: Path, user: str) -> Iterator[Ledger]:
    """A read-only connection to the user's ledger, for any thread (WAL: readers never wait)."""
    ledger = Ledger(user_home(home, user) / LEDGER, read_only=True)
    try:
        yield ledger
    finally:
        ledger.close()


def gate_decisions(ledger: Ledger) -> dict[int, dict]:
    """The latest gate decision per document number."""
    decided: dict[int, dict] = {}
    for row in reversed(ledger.history()):  # oldest first: the latest decision wins
        if row["kind"] == "gate" and isinstance(row["detail"], dict):
            decided[int(row["subject"].split()[-1])] = row["detail"]
    return decided


def document_view(
    user: str, row: dict[str, Any], gate: dict | None, phase: str | None
) -> dict[str, Any]:
    """A document as the API shows it: state stored | queued | learning | learned | refused |
    forgotten, and the reason."""
    status, reason = row["status"], row["status_reason"]
    if row["forgotten_at"] is not None:
        state = "forgotten"
    elif status == "learned":
        state = "learned"
    elif status == "rejected":
        state, reason = "refused", reason or "rejected"
    elif phase is not None:
        state, reason = phase, gate["reason"] if gate else reason
    elif gate and gate.get("decision") == "skip":
        state, reason = "refused", gate.get("reason")
    elif gate and gate.get("decision") == "learn":
        state, reason = "queued", gate.get("reason")
    else:
        state = "stored"
    return {
        "id": public_id(user, row["id"]),
        "object": "document",
        "title": row["title"],
        "uri": row["uri"],
        "source": row["source"],
        "chars": row["chars"],
        "added_at": row["added_at"],
        "state": state,
        "reason": reason,
    }


def budget(ledger: Ledger, cfg: SealConfig, now: float | None = None) -> dict[str, float]:
    """The user's compute budget: update seconds in the last hour against the allowance."""
    since = (now or time.time()) - BUDGET_WINDOW_S
    spent = sum(
        row["seconds"] or 0.0
        for row in ledger.history(200)
        if row["kind"] == "update" and row["at"] >= since
    )
    allowed = cfg.chat.update_minutes_per_hour * 60
    return {"seconds_used_last_hour": round(spent, 1), "seconds_per_hour": allowed}


def history_view(row: dict[str, Any], user: str) -> dict[str, Any]:
    """One entry of GET /v1/updates: an update with its decision and reason, or an event (a
    gate decision, a rollback, a forget) with its detail; document numbers as public ids."""
    out = {k: v for k, v in row.items() if v is not None}
    subject = row.get("subject") or ""
    if subject.startswith("document ") and subject.split()[-1].isdigit():
        out["subject"] = public_id(user, int(subject.split()[-1]))
    detail = out.get("detail")
    if isinstance(detail, dict) and isinstance(detail.get("nearest_document"), int):
        out["detail"] = detail | {"nearest_document": public_id(user, detail["nearest_document"])}
    return out
