"""The ledger's schema as ordered migrations: migration i upgrades a ledger from schema version i
(`PRAGMA user_version`) to i + 1. The ledger (stores/ledger.py) runs the missing ones when a
writer opens it; append a migration, never edit one."""

from __future__ import annotations

from collections.abc import Callable

import sqlite_utils


def _migrate_v1(db: sqlite_utils.Database) -> None:
    db["documents"].create(
        {
            "id": int,
            "namespace": str,
            "source": str,
            "uri": str,
            "title": str,
            "content_hash": str,
            "chars": int,
            "fetched_at": float,
            "added_at": float,
            "status": str,
            "status_reason": str,
            "forgotten_at": float,
        },
        pk="id",
        not_null={"namespace", "source", "content_hash", "added_at", "status"},
    )
    # A document is known once per namespace; a forgotten one may be read again.
    db.execute(
        "CREATE UNIQUE INDEX documents_live_hash ON documents(namespace, content_hash) "
        "WHERE forgotten_at IS NULL"
    )
    db["passages"].create(
        {
            "id": int,
            "document_id": int,
            "idx": int,
            "text": str,
            "content_hash": str,
            "created_at": float,
        },
        pk="id",
        foreign_keys=[("document_id", "documents", "id")],
        not_null={"document_id", "idx", "text", "content_hash", "created_at"},
    )
    db["self_edits"].create(
        {
            "id": int,
            "document_id": int,
            "passage_id": int,
            "format": str,
            "text": str,
            "sequences": str,
            "policy_version": str,
            "reward": float,
            "excluded": int,
            "created_at": float,
        },
        pk="id",
        foreign_keys=[("document_id", "documents", "id"), ("passage_id", "passages", "id")],
        not_null={"document_id", "format", "sequences", "excluded", "created_at"},
        defaults={"excluded": 0},
    )
    db["adapter_versions"].create(
        {
            "version": int,
            "parent": int,
            "base_fingerprint": str,
            "manifest_sha256": str,
            "created_at": float,
            "pinned": int,
            "collected_at": float,
            "note": str,
        },
        pk="version",
        foreign_keys=[("parent", "adapter_versions", "version")],
        not_null={"base_fingerprint", "manifest_sha256", "created_at", "pinned"},
        defaults={"pinned": 0},
    )
    # Named pointers to versions; "current" is the adapter the agent answers with (NULL: base).
    db["pointers"].create(
        {"name": str, "version": int},
        pk="name",
        foreign_keys=[("version", "adapter_versions", "version")],
    )
    db["updates"].create(
        {
            "id": int,
            "version": int,
            "parent_version": int,
            "strategy": str,
            "n_sequences": int,
            "n_replay": int,
            "losses": str,
            "seconds": float,
            "retention_before": str,
            "retention_after": str,
            "decision": str,
            "reason": str,
            "created_at": float,
        },
        pk="id",
        foreign_keys=[
            ("version", "adapter_versions", "version"),
            ("parent_version", "adapter_versions", "version"),
        ],
        not_null={"decision", "created_at"},
    )
    db["update_self_edits"].create(
        {"update_id": int, "self_edit_id": int, "role": str},
        pk=("update_id", "self_edit_id"),
        foreign_keys=[("update_id", "updates", "id"), ("self_edit_id", "self_edits", "id")],
        not_null={"role"},
    )
    db["probes"].create(
        {
            "id": int,
            "document_id": int,
            "passage_id": int,
            "question": str,
            "answer": str,
            "origin": str,
            "created_at": float,
        },
        pk="id",
        foreign_keys=[("document_id", "documents", "id"), ("passage_id", "passages", "id")],
        not_null={"document_id", "question", "answer", "origin", "created_at"},
    )
    db["eval_runs"].create(
        {
            "id": int,
            "kind": str,
            "adapter_version": int,
            "config": str,
            "results": str,
            "started_at": float,
            "finished_at": float,
        },
        pk="id",
        not_null={"kind", "started_at"},
    )
    db["events"].create(
        {"id": int, "at": float, "kind": str, "subject": str, "detail": str},
        pk="id",
        not_null={"at", "kind"},
    )
    for table, columns in [
        ("passages", ["document_id"]),
        ("self_edits", ["document_id"]),
        ("probes", ["document_id"]),
        ("updates", ["version"]),
        ("update_self_edits", ["self_edit_id"]),
    ]:
        db[table].create_index(columns)


def _migrate_v2(db: sqlite_utils.Database) -> None:
    # What a version is: trained continually, one document's own adapter, or a combination of
    # document adapters (their versions in `components`, a JSON list).
    db["adapter_versions"].add_column("kind", str, not_null_default="continual")
    db["adapter_versions"].add_column("components", str)


def _migrate_v3(db: sqlite_utils.Database) -> None:
    # `seal ingest`: the sources it polls and every item it saw, with its state and why.
    db["ingest_sources"].create(
        {
            "id": int,
            "kind": str,  # feed | folder | urls
            "location": str,
            "added_at": float,
            "interval_s": float,  # seconds between polls
            "etag": str,
            "last_modified": str,
            "next_poll_at": float,
            "failures": int,
            "last_polled_at": float,
            "last_ok_at": float,
            "last_error": str,
            "last_error_at": float,
        },
        pk="id",
        not_null={"kind", "location", "added_at", "failures"},
        defaults={"failures": 0},
    )
    db["ingest_sources"].create_index(["location"], unique=True)
    # One row per (source, story key, revision): a story republished with edits is a new
    # revision; the same entry seen again (or twice in one feed) is ignored by the unique index.
    db["ingest_items"].create(
        {
            "id": int,
            "source_id": int,
            "key": str,  # canonical URL, else the GUID, else a hash of the entry
            "revision": str,
            "url": str,
            "guid": str,
            "title": str,
            "inline_text": str,  # the feed's own text of the entry, until it is stored
            "published_at": float,
            "seen_at": float,
            "state": str,  # seen | stored | self_edited | learned | rejected
            "reason": str,
            "content_hash": str,
            "document_id": int,
            "supersedes": int,
            "attempts": int,
            "next_try_at": float,
            "updated_at": float,
        },
        pk="id",
        foreign_keys=[
            ("source_id", "ingest_sources", "id"),
            ("document_id", "documents", "id"),
            ("supersedes", "ingest_items", "id"),
        ],
        not_null={"source_id", "key", "revision", "seen_at", "state", "attempts", "updated_at"},
        defaults={"attempts": 0},
    )
    db["ingest_items"].create_index(["source_id", "key", "revision"], unique=True)
    db["ingest_items"].create_index(["state"])
    db["ingest_items"].create_index(["key"])
    db["ingest_items"].create_index(["content_hash"])
    # One item per document: a document is learned at most once (updates mark it learned in the
    # transaction that commits the adapter), so no item can be learned twice.
    db.execute(
        "CREATE UNIQUE INDEX ingest_items_document ON ingest_items(document_id) "
        "WHERE document_id IS NOT NULL"
    )
    db["ingest_batches"].create(
        {
            "id": int,
            "started_at": float,
            "seconds": float,
            "n_documents": int,
            "update_id": int,
            "decision": str,
        },
        pk="id",
        foreign_keys=[("update_id", "updates", "id")],
        not_null={"started_at", "seconds", "n_documents"},
    )


# In order; the schema version of a ledger is how many of these it has run.
MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [
    _migrate_v1,
    _migrate_v2,
    _migrate_v3,
]
SCHEMA_VERSION = len(MIGRATIONS)
