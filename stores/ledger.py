"""The ledger: one SQLite file recording what the agent read, wrote and learned, and why.

Tables: documents, passages, self_edits, adapter_versions, updates (with the self-edits each one
trained on), probes, eval_runs, events (rollbacks, forgets, pins, imports), and `seal ingest`'s
ingest_sources, ingest_items and ingest_batches. WAL mode, foreign keys on, `synchronous=FULL`;
the schema is versioned by `PRAGMA user_version` and upgraded by the ordered migrations of
stores/schema.py when a writer opens the file. Every multi-row write is one transaction.
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils

from agent.core.errors import SealError
from agent.core.io import storable
from stores import ledger_file
from stores.schema import MIGRATIONS, SCHEMA_VERSION

DOCUMENT_STATUSES = ("stored", "self_edited", "learned", "rejected", "forgotten")
DECISIONS = ("accept", "rollback")


def _json(value: Any) -> str | None:
    return None if value is None else storable(json.dumps(value, ensure_ascii=False))


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    """SQLite stores UTF-8: text with lone surrogates is stored with '?' in their place."""
    return {k: storable(v) if isinstance(v, str) else v for k, v in row.items()}


@dataclass(frozen=True)
class ReplayItem:
    self_edit_id: int
    document_id: int
    sequences: list[str]
    created_at: float


class Ledger:
    """The SQLite ledger. Writers hold the state's lock; readers open it with `read_only=True`."""

    def __init__(self, path: Path, *, read_only: bool = False):
        self.path = Path(path)
        self.read_only = read_only
        # A missing or empty file is a new ledger to a writer; stores/state.py refuses it first
        # when the state holds what a lost ledger knew (adapter versions, passages).
        problem = ledger_file.file_problem(self.path)
        if read_only and problem in ledger_file.FRESH:
            raise SealError(f"ledger {self.path} is {problem}")
        if problem and problem not in ledger_file.FRESH:
            raise ledger_file.LedgerDamaged(
                f"ledger {self.path} is {problem}; {ledger_file.doctor_hint(self.path.parent)}"
            )
        try:
            conn = ledger_file.connect(self.path, read_only=read_only)
            conn.execute("PRAGMA busy_timeout = 10000")
            conn.execute("PRAGMA foreign_keys = ON")
            if not read_only:
                # Before anything is written: a writer never writes into a damaged file.
                damage = ledger_file.quick_check(conn)
                if damage:
                    conn.close()
                    raise ledger_file.LedgerDamaged(
                        f"ledger {self.path} fails SQLite's check ({'; '.join(damage[:3])}); "
                        + ledger_file.doctor_hint(self.path.parent)
                    )
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = FULL")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        except sqlite3.Error as exc:
            error = ledger_file.translate(exc, self.path)
            raise error or SealError(
                f"ledger {self.path} cannot be opened ({exc}): the file is damaged or not a seal "
                f"ledger; {ledger_file.doctor_hint(self.path.parent)}"
            ) from exc
        self.db = sqlite_utils.Database(conn)
        if version > SCHEMA_VERSION:
            raise SealError(
                f"ledger {self.path} has schema version {version}, newer than this seal-agent "
                f"understands ({SCHEMA_VERSION}); upgrade seal-agent"
            )
        if version == 0 and tables - {"sqlite_sequence"}:
            raise SealError(
                f"{self.path} is an SQLite file that seal did not create; move it away or use "
                "another --home"
            )
        if version < SCHEMA_VERSION:
            if read_only:
                raise SealError(
                    f"ledger {self.path} has schema version {version}; run any writing seal "
                    "command once to upgrade it"
                )
            with self.transaction():
                for migrate in MIGRATIONS[version:]:
                    migrate(self.db)
                self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite_utils.Database]:
        """All writes inside commit together or not at all (nested blocks use savepoints)."""
        if self.read_only:
            raise SealError(f"ledger {self.path} is open read-only")
        conn = self.db.conn
        if conn.in_transaction:
            with self.db.atomic():  # a savepoint
                yield self.db
            return
        # IMMEDIATE: take the write lock first, waiting up to busy_timeout. A deferred BEGIN whose
        # first statement reads (sqlite-utils looks up the table before an insert) fails at once
        # with "database is locked" when another connection of the same writer (the update
        # worker of `seal chat` or `seal serve`) committed meanwhile: a stale snapshot cannot wait.
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        try:
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _insert(self, table: str, row: dict[str, Any]) -> int:
        with self.transaction():
            return self.db[table].insert(_clean(row)).last_pk

    def _row(self, sql: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
        try:
            rows = list(self.db.query(sql, params))
        except OverflowError:  # an id beyond SQLite's 64-bit integers matches no row
            return None
        return rows[0] if rows else None

    def schema_version(self) -> int:
        return self.db.execute("PRAGMA user_version").fetchone()[0]

    def integrity_errors(self) -> list[str]:
        """SQLite's own consistency check plus foreign-key violations; empty when healthy."""
        found = [r[0] for r in self.db.execute("PRAGMA integrity_check").fetchall()]
        errors = [] if found == ["ok"] else found
        errors += [f"foreign key: {r}" for r in self.db.execute("PRAGMA foreign_key_check")]
        return errors

    # documents and passages

    def find_document(self, namespace: str, content_hash: str) -> dict[str, Any] | None:
        return self._row(
            "SELECT * FROM documents WHERE namespace = ? AND content_hash = ? "
            "AND forgotten_at IS NULL",
            [namespace, content_hash],
        )

    def add_document(
        self,
        *,
        namespace: str,
        source: str,
        uri: str | None,
        title: str | None,
        content_hash: str,
        chars: int,
        passages: Sequence[tuple[str, str]],
        fetched_at: float | None = None,
    ) -> tuple[int, list[int]]:
        """Insert a document and its (text, content hash) passages in one transaction."""
        now = time.time()
        document = {
            "namespace": namespace,
            "source": source,
            "uri": uri,
            "title": title,
            "content_hash": content_hash,
            "chars": chars,
            "fetched_at": fetched_at,
            "added_at": now,
            "status": "stored",
        }
        with self.transaction():
            doc_id = self._insert("documents", document)
            ids = [
                self._insert(
                    "passages",
                    {
                        "document_id": doc_id,
                        "idx": i,
                        "text": text,
                        "content_hash": digest,
                        "created_at": now,
                    },
                )
                for i, (text, digest) in enumerate(passages)
            ]
        return doc_id, ids

    def document(self, document_id: int) -> dict[str, Any]:
        row = self._row("SELECT * FROM documents WHERE id = ?", [document_id])
        if row is None:
            raise SealError(f"no document {document_id} in {self.path}; `seal history` lists them")
        return row

    def document_statuses(self, document_ids: Sequence[int]) -> dict[int, str]:
        """The status of each of these documents that the ledger holds; ids it lacks are left
        out (vectors that outlived their ledger: `seal doctor --rebuild` could not copy them)."""
        ids = sorted(set(document_ids))
        marks = ", ".join("?" * len(ids))
        query = f"SELECT id, status FROM documents WHERE id IN ({marks})"
        return {r["id"]: r["status"] for r in self.db.query(query, ids)} if ids else {}

    def documents(self, *, include_forgotten: bool = False) -> list[dict[str, Any]]:
        where = "" if include_forgotten else "WHERE forgotten_at IS NULL"
        return list(self.db.query(f"SELECT * FROM documents {where} ORDER BY id"))

    def set_document_status(self, document_id: int, status: str, reason: str | None = None):
        if status not in DOCUMENT_STATUSES:
            raise ValueError(f"unknown document status {status!r}")
        with self.transaction():
            self.db["documents"].update(document_id, {"status": status, "status_reason": reason})

    def passages(self, document_id: int) -> list[dict[str, Any]]:
        return list(
            self.db.query(
                "SELECT * FROM passages WHERE document_id = ? ORDER BY idx", [document_id]
            )
        )

    def live_passages(self, namespace: str) -> list[dict[str, Any]]:
        return list(
            self.db.query(
                "SELECT p.* FROM passages p JOIN documents d ON d.id = p.document_id "
                "WHERE d.namespace = ? AND d.forgotten_at IS NULL ORDER BY p.id",
                [namespace],
            )
        )

    def forget_document(self, document_id: int) -> dict[str, int]:
        """Delete the document's passages and probes, exclude its self-edits from replay."""
        doc = self.document(document_id)
        if doc["forgotten_at"] is not None:
            raise SealError(f"document {document_id} was already forgotten")
        now = time.time()
        with self.transaction():
            probes = self.db.execute(
                "DELETE FROM probes WHERE document_id = ?", [document_id]
            ).rowcount
            self.db.execute(
                "UPDATE self_edits SET passage_id = NULL, excluded = 1 WHERE document_id = ?",
                [document_id],
            )
            edits = self.db.execute(
                "SELECT count(*) FROM self_edits WHERE document_id = ?", [document_id]
            ).fetchone()[0]
            passages = self.db.execute(
                "DELETE FROM passages WHERE document_id = ?", [document_id]
            ).rowcount
            self.db["documents"].update(
                document_id,
                {"status": "forgotten", "status_reason": "seal forget", "forgotten_at": now},
            )
            counts = {"passages": passages, "probes": probes, "self_edits_excluded": edits}
            self.add_event("forget", f"document {document_id}", {"title": doc["title"], **counts})
        return counts

    # self-edits, probes, evaluation runs

    def add_self_edit(
        self,
        *,
        document_id: int,
        format: str,
        text: str,
        sequences: Sequence[str],
        passage_id: int | None = None,
        policy_version: str | None = None,
        reward: float | None = None,
    ) -> int:
        return self._insert(
            "self_edits",
            {
                "document_id": document_id,
                "passage_id": passage_id,
                "format": format,
                "text": text,
                "sequences": _json(list(sequences)),
                "policy_version": policy_version,
                "reward": reward,
                "excluded": 0,
                "created_at": time.time(),
            },
        )

    def add_probe(
        self,
        *,
        document_id: int,
        question: str,
        answer: str,
        origin: str,
        passage_id: int | None = None,
    ) -> int:
        if origin not in ("dataset", "generated"):
            raise ValueError(f"probe origin must be 'dataset' or 'generated', not {origin!r}")
        return self._insert(
            "probes",
            {
                "document_id": document_id,
                "passage_id": passage_id,
                "question": question,
                "answer": answer,
                "origin": origin,
                "created_at": time.time(),
            },
        )

    def documents_with_probes(self) -> list[int]:
        """Learned, not forgotten documents that have probes: what retention checks can ask."""
        return [
            r["id"]
            for r in self.db.query(
                "SELECT id FROM documents WHERE status = 'learned' AND forgotten_at IS NULL "
                "AND EXISTS (SELECT 1 FROM probes p WHERE p.document_id = documents.id) "
                "ORDER BY id"
            )
        ]

    def probes(self, document_id: int) -> list[dict[str, Any]]:
        return list(
            self.db.query("SELECT * FROM probes WHERE document_id = ? ORDER BY id", [document_id])
        )

    def start_eval_run(self, kind: str, config: dict, adapter_version: int | None) -> int:
        return self._insert(
            "eval_runs",
            {
                "kind": kind,
                "adapter_version": adapter_version,
                "config": _json(config),
                "started_at": time.time(),
            },
        )

    def finish_eval_run(self, run_id: int, results: dict) -> None:
        with self.transaction():
            self.db["eval_runs"].update(
                run_id, {"results": _json(results), "finished_at": time.time()}
            )

    # adapter versions and updates

    def add_adapter_version(
        self,
        version: int,
        *,
        parent: int | None,
        base_fingerprint: str,
        manifest_sha256: str,
        created_at: float,
        note: str | None = None,
        kind: str = "continual",
        components: Sequence[int] | None = None,
    ) -> None:
        self._insert(
            "adapter_versions",
            {
                "version": version,
                "parent": parent,
                "base_fingerprint": base_fingerprint,
                "manifest_sha256": manifest_sha256,
                "created_at": created_at,
                "pinned": 0,
                "note": note,
                "kind": kind,
                "components": _json(list(components)) if components is not None else None,
            },
        )

    def adapter_version(self, version: int) -> dict[str, Any] | None:
        return self._row("SELECT * FROM adapter_versions WHERE version = ?", [version])

    def adapter_versions(self, *, include_collected: bool = False) -> list[dict[str, Any]]:
        where = "" if include_collected else "WHERE collected_at IS NULL"
        return list(self.db.query(f"SELECT * FROM adapter_versions {where} ORDER BY version"))

    def max_adapter_version(self) -> int:
        return self.db.execute("SELECT coalesce(max(version), 0) FROM adapter_versions").fetchone()[
            0
        ]

    def pointer(self, name: str) -> int | None:
        row = self._row("SELECT version FROM pointers WHERE name = ?", [name])
        return row["version"] if row else None

    def has_pointer(self, name: str) -> bool:
        return self._row("SELECT 1 AS x FROM pointers WHERE name = ?", [name]) is not None

    def pointer_was_moved(self) -> bool:
        """Whether an accepted update or a rollback ever set `current` (each does it in the
        transaction that records it), so that a missing pointer row is damage, not a new state."""
        return bool(
            self._row(
                "SELECT 1 AS x FROM updates WHERE decision = 'accept' AND version IS NOT NULL "
                "UNION ALL SELECT 1 FROM events WHERE kind = 'rollback' LIMIT 1"
            )
        )

    def set_pointer(self, name: str, version: int | None) -> None:
        with self.transaction():
            self.db["pointers"].upsert({"name": name, "version": version}, pk="name")

    def set_pinned(self, version: int, pinned: bool) -> None:
        with self.transaction():
            self.db["adapter_versions"].update(version, {"pinned": int(pinned)})
            self.add_event("pin" if pinned else "unpin", f"version {version}")

    def mark_collected(self, versions: Sequence[int]) -> None:
        now = time.time()
        with self.transaction():
            for version in versions:
                self.db["adapter_versions"].update(version, {"collected_at": now})
            if versions:
                self.add_event("gc", "versions " + ", ".join(map(str, versions)))

    def record_update(
        self,
        *,
        decision: str,
        reason: str,
        version: int | None,
        parent_version: int | None,
        n_sequences: int,
        new_self_edits: Sequence[int] = (),
        replay_self_edits: Sequence[int] = (),
        strategy: str | None = None,
        losses: Sequence[float] = (),
        seconds: float | None = None,
        retention_before: Any = None,
        retention_after: Any = None,
    ) -> int:
        """One update attempt: what it trained on, the evidence, and whether it was kept."""
        if decision not in DECISIONS:
            raise ValueError(f"decision must be one of {DECISIONS}, not {decision!r}")
        with self.transaction():
            update_id = (
                self.db["updates"]
                .insert(
                    {
                        "version": version,
                        "parent_version": parent_version,
                        "strategy": strategy,
                        "n_sequences": n_sequences,
                        "n_replay": len(replay_self_edits),
                        "losses": _json(list(losses)),
                        "seconds": seconds,
                        "retention_before": _json(retention_before),
                        "retention_after": _json(retention_after),
                        "decision": decision,
                        "reason": reason,
                        "created_at": time.time(),
                    }
                )
                .last_pk
            )
            links = [(i, "new") for i in new_self_edits] + [
                (i, "replay") for i in replay_self_edits
            ]
            self.db["update_self_edits"].insert_all(
                {"update_id": update_id, "self_edit_id": i, "role": role} for i, role in links
            )
            if decision == "accept" and new_self_edits:
                self.db.execute(
                    "UPDATE documents SET status = 'learned', status_reason = ? WHERE id IN "
                    "(SELECT document_id FROM self_edits WHERE id IN "
                    f"({','.join('?' * len(new_self_edits))}))",
                    [f"update {update_id}", *new_self_edits],
                )
        return update_id

    def add_event(self, kind: str, subject: str, detail: Any = None) -> int:
        return self._insert(
            "events", {"at": time.time(), "kind": kind, "subject": subject, "detail": _json(detail)}
        )

    # queries the rest of the system needs

    def _replay_rows(self, exclude_documents: Sequence[int]) -> list[dict[str, Any]]:
        """The replay pool without its sequences: cheap to sample from."""
        rows = self.db.query(
            "SELECT DISTINCT s.id, s.document_id, s.created_at FROM self_edits s "
            "JOIN update_self_edits l ON l.self_edit_id = s.id AND l.role = 'new' "
            "JOIN updates u ON u.id = l.update_id AND u.decision = 'accept' "
            "WHERE s.excluded = 0 ORDER BY s.id"
        )
        skip = set(exclude_documents)
        return [r for r in rows if r["document_id"] not in skip]

    def _with_sequences(self, rows: Sequence[dict[str, Any]]) -> list[ReplayItem]:
        ids = [r["id"] for r in rows]
        sequences = {
            r["id"]: json.loads(r["sequences"])
            for r in self.db.query(
                f"SELECT id, sequences FROM self_edits WHERE id IN ({','.join('?' * len(ids))})",
                ids,
            )
        }
        return [
            ReplayItem(r["id"], r["document_id"], sequences[r["id"]], r["created_at"]) for r in rows
        ]

    def replay_pool(self, *, exclude_documents: Sequence[int] = ()) -> list[ReplayItem]:
        """Self-edits that an accepted update trained on, minus forgotten documents' ones."""
        return self._with_sequences(self._replay_rows(exclude_documents))

    def replay_of(self, documents: Sequence[int]) -> list[ReplayItem]:
        """The replay pool's self-edits of these documents."""
        wanted = set(documents)
        return self._with_sequences(
            [r for r in self._replay_rows(()) if r["document_id"] in wanted]
        )

    def sample_replay(
        self,
        n: int,
        *,
        seed: int,
        half_life_s: float | None = None,
        exclude_documents: Sequence[int] = (),
    ) -> list[ReplayItem]:
        """`n` replay self-edits without repetition: uniform, or recency-weighted by half-life.
        Only the sampled self-edits' sequences are read."""
        pool = self._replay_rows(exclude_documents)
        rng = random.Random(seed)
        if n >= len(pool):
            return self._with_sequences(pool)
        if half_life_s is None:
            return self._with_sequences(rng.sample(pool, n))
        newest = max(r["created_at"] for r in pool)
        # Weighted sampling without replacement: keep the n largest u ** (1 / w) keys.
        keyed = [
            (rng.random() ** (1 / 0.5 ** ((newest - r["created_at"]) / half_life_s)), r)
            for r in pool
        ]
        picked = sorted(keyed, key=lambda kv: kv[0], reverse=True)[:n]
        return self._with_sequences([r for _, r in picked])

    def history(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Updates and events, newest first."""
        rows = list(
            self.db.query(
                "SELECT 'update' AS kind, created_at AS at, id, version, parent_version, "
                "decision, reason, n_sequences, n_replay, seconds, strategy, NULL AS subject, "
                "NULL AS detail FROM updates "
                "UNION ALL SELECT kind, at, id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, "
                "subject, detail FROM events ORDER BY at DESC, id DESC"
                + (f" LIMIT {int(limit)}" if limit else "")
            )
        )
        for row in rows:
            if row["detail"]:
                row["detail"] = json.loads(row["detail"])
        return rows

    def provenance(self, version: int) -> list[dict[str, Any]]:
        """The chain from `version` back to the base: each version, its update, and the
        documents whose self-edits it trained on (new and replayed)."""
        chain = []
        current: int | None = version
        while current:
            row = self.adapter_version(current)
            if row is None:
                raise SealError(f"no adapter version {current} in the ledger")
            update = self._row(
                "SELECT * FROM updates WHERE version = ? ORDER BY id DESC LIMIT 1", [current]
            )
            documents = []
            if update:
                documents = list(
                    self.db.query(
                        "SELECT DISTINCT d.id, d.title, d.uri, d.source, l.role, d.forgotten_at "
                        "FROM update_self_edits l JOIN self_edits s ON s.id = l.self_edit_id "
                        "JOIN documents d ON d.id = s.document_id WHERE l.update_id = ? "
                        "ORDER BY l.role, d.id",
                        [update["id"]],
                    )
                )
            chain.append({"version": row, "update": update, "documents": documents})
            current = row["parent"]
        return chain

    def versions_trained_on(self, document_id: int) -> list[int]:
        """Adapter versions whose own update trained on this document's self-edits."""
        return [
            r["version"]
            for r in self.db.query(
                "SELECT DISTINCT u.version FROM updates u "
                "JOIN update_self_edits l ON l.update_id = u.id "
                "JOIN self_edits s ON s.id = l.self_edit_id "
                "WHERE s.document_id = ? AND u.version IS NOT NULL ORDER BY u.version",
                [document_id],
            )
        ]

    def counts(self) -> dict[str, int]:
        q = {
            "documents": "SELECT count(*) FROM documents WHERE forgotten_at IS NULL",
            "forgotten_documents": "SELECT count(*) FROM documents WHERE forgotten_at IS NOT NULL",
            "passages": "SELECT count(*) FROM passages",
            "self_edits": "SELECT count(*) FROM self_edits",
            "updates_accepted": "SELECT count(*) FROM updates WHERE decision = 'accept'",
            "updates_rolled_back": "SELECT count(*) FROM updates WHERE decision = 'rollback'",
            "adapter_versions": "SELECT count(*) FROM adapter_versions WHERE collected_at IS NULL",
            "probes": "SELECT count(*) FROM probes",
        }
        return {name: self.db.execute(sql).fetchone()[0] for name, sql in q.items()}

    def self_edit_writers(self) -> dict[str, int]:
        """Self-edits per writer (the provenance write_self_edits records: "tools", "model",
        "bundled:SHA", "policy:FOLDER"); "unrecorded" for those stored before it was kept."""
        rows = self.db.execute(
            "SELECT coalesce(policy_version, 'unrecorded'), count(*) FROM self_edits "
            "GROUP BY 1 ORDER BY 2 DESC"
        )
        return dict(rows.fetchall())

    # news ingestion (`seal ingest`, agent/ingest)

    def ingest_source(self, kind: str, location: str, interval_s: float | None) -> dict[str, Any]:
        """The source row for `location`, registered on first use, with this poll interval
        (None: the configured default)."""
        with self.transaction():
            self.db.execute(
                "INSERT OR IGNORE INTO ingest_sources (kind, location, added_at, failures) "
                "VALUES (?, ?, ?, 0)",
                [kind, storable(location), time.time()],
            )
            self.db.execute(
                "UPDATE ingest_sources SET interval_s = ? WHERE location = ?",
                [interval_s, storable(location)],
            )
        return self._row("SELECT * FROM ingest_sources WHERE location = ?", [storable(location)])

    def ingest_sources(self) -> list[dict[str, Any]]:
        return list(self.db.query("SELECT * FROM ingest_sources ORDER BY id"))

    def ingest_update_source(self, source_id: int, **fields: Any) -> None:
        with self.transaction():
            self.db["ingest_sources"].update(source_id, _clean(fields))

    def ingest_add_items(self, rows: Sequence[dict[str, Any]]) -> list[int]:
        """Insert the items not seen before (by source, key and revision); their new ids."""
        now = time.time()
        ids = []
        with self.transaction():
            for row in rows:
                cursor = self.db.execute(
                    "INSERT OR IGNORE INTO ingest_items (source_id, key, revision, url, guid, "
                    "title, inline_text, published_at, seen_at, state, attempts, updated_at, "
                    "supersedes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'seen', 0, ?, (SELECT "
                    "max(id) FROM ingest_items WHERE source_id = ? AND key = ?))",
                    [
                        *(
                            _clean(row).get(k)
                            for k in ("source_id", "key", "revision", "url", "guid", "title")
                        ),
                        storable(row["inline_text"]) if row.get("inline_text") else None,
                        row.get("published_at"),
                        now,
                        now,
                        row["source_id"],
                        storable(row["key"]),
                    ],
                )
                if cursor.rowcount:
                    ids.append(cursor.lastrowid)
        return ids

    def ingest_item(self, item_id: int) -> dict[str, Any] | None:
        return self._row("SELECT * FROM ingest_items WHERE id = ?", [item_id])

    def ingest_set_item(self, item_id: int, **fields: Any) -> None:
        with self.transaction():
            self.db["ingest_items"].update(item_id, {**_clean(fields), "updated_at": time.time()})

    def ingest_pending(self, now: float, limit: int) -> list[dict[str, Any]]:
        """Items seen but not stored yet and due for a try, newest first (ties: feed order)."""
        return list(
            self.db.query(
                "SELECT * FROM ingest_items WHERE state = 'seen' AND (next_try_at IS NULL OR "
                "next_try_at <= ?) ORDER BY coalesce(published_at, seen_at) DESC, id "
                "LIMIT ?",
                [now, limit],
            )
        )

    def ingest_item_with(self, *, content_hash: str, exclude: int) -> dict[str, Any] | None:
        """Another item with this content that was stored (whatever became of it since)."""
        return self._row(
            "SELECT * FROM ingest_items WHERE content_hash = ? AND id != ? AND document_id IS "
            "NOT NULL ORDER BY id LIMIT 1",
            [content_hash, exclude],
        )

    def ingest_item_of_document(self, document_id: int) -> dict[str, Any] | None:
        return self._row("SELECT * FROM ingest_items WHERE document_id = ?", [document_id])

    def ingest_sync_items(self) -> int:
        """Items take the state of their document (learned, or rejected by the update's gate),
        which the update procedure sets in the transaction that commits or refuses the adapter."""
        with self.transaction():
            return self.db.execute(
                "UPDATE ingest_items SET state = d.status, reason = d.status_reason, "
                "inline_text = NULL, updated_at = ? FROM documents d WHERE d.id = "
                "ingest_items.document_id AND ingest_items.state NOT IN ('rejected') AND "
                "d.status IN ('self_edited', 'learned', 'rejected') AND "
                "ingest_items.state != d.status",
                [time.time()],
            ).rowcount

    def ingest_queue(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Stored items whose document is not learned yet, newest first: what updates learn."""
        return list(
            self.db.query(
                "SELECT i.*, d.title AS document_title FROM ingest_items i "
                "JOIN documents d ON d.id = i.document_id WHERE i.state IN ('stored', "
                "'self_edited') AND d.status IN ('stored', 'self_edited') AND d.forgotten_at IS "
                "NULL ORDER BY coalesce(i.published_at, i.seen_at) DESC, i.id"
                + (f" LIMIT {int(limit)}" if limit else "")
            )
        )

    def ingest_record_batch(
        self,
        *,
        started_at: float,
        seconds: float,
        n_documents: int,
        update_id: int | None,
        decision: str | None,
    ) -> int:
        return self._insert(
            "ingest_batches",
            {
                "started_at": started_at,
                "seconds": seconds,
                "n_documents": n_documents,
                "update_id": update_id,
                "decision": decision,
            },
        )

    def ingest_update_seconds(self, since: float) -> float:
        """Seconds spent in ingest updates that started after `since` (the compute budget)."""
        return self.db.execute(
            "SELECT coalesce(sum(seconds), 0) FROM ingest_batches WHERE started_at >= ?", [since]
        ).fetchone()[0]

    def ingest_counts(self, since: float) -> dict[str, Any]:
        """Items by state, queue depth, rejection reasons, and updates since `since`."""
        by_state = {
            r["state"]: r["n"]
            for r in self.db.query("SELECT state, count(*) AS n FROM ingest_items GROUP BY state")
        }
        reasons = {
            r["reason"]: r["n"]
            for r in self.db.query(
                "SELECT coalesce(reason, '?') AS reason, count(*) AS n FROM ingest_items "
                "WHERE state = 'rejected' GROUP BY 1 ORDER BY n DESC, max(updated_at) DESC "
                "LIMIT 10"
            )
        }
        batches = self._row(
            "SELECT count(*) AS n, coalesce(sum(decision = 'accept'), 0) AS accepted, "
            "coalesce(sum(seconds), 0) AS seconds FROM ingest_batches WHERE started_at >= ?",
            [since],
        )
        return {
            "items": sum(by_state.values()),
            "by_state": by_state,
            "queue": len(self.ingest_queue()),
            "rejected_reasons": reasons,
            "updates_since": batches,
        }
