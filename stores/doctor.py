"""`seal doctor`: say what is wrong with a state folder, and on request rebuild a lost or damaged
ledger from what survives, never deleting anything.

    diagnose(home)  reads only: the marker, the ledger file (SQLite's full integrity check and
                    foreign keys), the `current` pointer, every live adapter version against its
                    folder and checksums, every merged base
    rebuild(home)   under the writer lock: moves the damaged ledger (with its -wal and -shm) into
                    HOME/doctor-<time>/, creates a new ledger, copies every row SQLite can still
                    read from the old file (table by table, from both ends of each table, rows
                    whose references are lost left out), adds each adapter version folder its
                    copy lacks from the folder's manifest (version, parent, base fingerprint,
                    kind, components), restores the documents and passages the passage store
                    holds that the copy lacks (under their own ids), and points `current` at the
                    old pointer when it survived, else at the newest version whose checksums hold

The adapter and base folders are the ground truth for what was learned: their manifests carry
everything a version needs to load. The passage store (HOME/vectors/) is the last copy of the
documents' text: each of its passages keeps its text, ledger id, document id and time, so the
rebuilt ledger names every one of them again, and no writer takes them for a write the ledger
rolled back (stores/state.py, `reconcile_vectors`); those it cannot name are kept and reported.
The ledger's self-edits and history are copied where they can be read and are otherwise kept in
the set-aside file.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from agent.core.errors import SealError
from stores.adapters import AdapterStore, folder_version
from stores.folders import MANIFEST, sha256_file
from stores.ledger import Ledger
from stores.ledger_file import FRESH, SHM, WAL, file_problem, full_check, side_file
from stores.state import (
    ADAPTERS,
    LEDGER,
    MARKER,
    REBUILT,
    VECTORS,
    State,
    WriterLock,
    learned_on_disk,
    read_marker,
    write_marker,
)

if TYPE_CHECKING:
    from stores.passages import PassageRecord

# Parents before children, so that foreign keys hold as rows are copied: the documents and
# passages the old file cannot give are restored from the passage store before the self-edits
# (which name them) are copied, and the versions it cannot give are added from their manifests
# between the last two groups.
TABLES_DOCUMENTS = ("documents", "passages")
TABLES_BEFORE_VERSIONS = ("self_edits", "adapter_versions")
TABLES_AFTER_VERSIONS = (
    "pointers",
    "updates",
    "update_self_edits",
    "probes",
    "eval_runs",
    "events",
    "ingest_sources",
    "ingest_items",
    "ingest_batches",
)


@dataclass
class Rebuilt:
    kept_aside: Path  # the folder holding the damaged ledger files
    copied: dict[str, int] = field(default_factory=dict)  # rows copied per table
    unreadable: list[str] = field(default_factory=list)  # tables SQLite could not read whole
    left_out: int = 0  # rows whose referenced rows were lost
    from_manifests: list[int] = field(default_factory=list)  # versions added from manifests
    current: int | None = None
    marker_written: bool = False
    restored_documents: int = 0  # documents rows made from the passage store
    restored_passages: int = 0  # passages rows made from it, under their own ids
    # Passages kept in the store that the ledger cannot name (their document is another
    # namespace's, or their metadata is damaged): no writer deletes them; they are not retrieved.
    unrestored_passages: list[int] = field(default_factory=list)
    # Why the passage store could not be read: then writers keep every vector the ledger does
    # not name (stores/state.py, `kept_by_rebuild`).
    passage_store_problem: str | None = None


def _ledger_findings(home: Path) -> list[str]:
    path = home / LEDGER
    problem = file_problem(path)
    if problem in FRESH:
        held = learned_on_disk(home)
        return (
            [f"ledger {path} is {problem} but the folder holds {', '.join(held)}"] if held else []
        )
    if problem:
        return [f"ledger {path} is {problem}"]
    try:
        with State.open(home, read_only=True) as state:
            findings = [f"ledger: {f}" for f in full_check(state.ledger.db.conn)]
            broken = any("refer to missing rows" not in f for f in findings)
            return findings + ([] if broken else _state_findings(state))
    except (SealError, sqlite3.Error) as exc:
        return [f"ledger {path}: {exc}"]


def _state_findings(state: State) -> list[str]:
    """The pointer, the live versions and the merged bases of a state whose ledger is sound."""
    findings = []
    try:
        state.adapters.current()
    except SealError as exc:
        findings.append(str(exc))
    for row in state.ledger.adapter_versions():
        try:
            state.adapters.verify(row["version"])
        except SealError as exc:
            findings.append(str(exc))
    for base in state.bases.bases():
        try:
            state.bases.verify(base)
        except SealError as exc:
            findings.append(str(exc))
    return findings


def diagnose(home: Path) -> list[str]:
    """What is wrong with the state in `home`, one line each; [] when nothing is. Writes nothing."""
    home = Path(home)
    if not home.is_dir():
        raise SealError(f"{home} is not a folder; give the state folder as --home")
    if not (home / MARKER).exists():
        if not ((home / LEDGER).exists() or learned_on_disk(home)):
            raise SealError(f"{home} is not a seal state folder (no {MARKER}, ledger or adapters)")
        return [f"the marker {MARKER} is missing"] + _ledger_findings(home)
    try:
        read_marker(home)
    except SealError as exc:
        return [str(exc)]
    return _ledger_findings(home)


def _needs_rebuild(path: Path) -> bool:
    if file_problem(path) is not None:
        return True
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            return bool(full_check(conn))
        finally:
            conn.close()
    except sqlite3.Error:
        return True


def _set_aside(home: Path) -> Path:
    """Move the ledger and its -wal and -shm into a new HOME/doctor-<time>/ folder."""
    aside = home / f"doctor-{time.strftime('%Y%m%d-%H%M%S')}"
    aside.mkdir()
    path = home / LEDGER
    for file in (path, side_file(path, WAL), side_file(path, SHM)):
        if file.exists():
            os.rename(file, aside / file.name)
    return aside


def _readable_rows(src: sqlite3.Connection, table: str, columns: str) -> tuple[list, bool]:
    """Rows of `table` SQLite can still read, scanning from the start and then from the end,
    each until the first damaged page; and whether the whole table was read."""
    rows: dict[int, tuple] = {}
    whole = True
    for order in ("ASC", "DESC"):
        try:
            for row in src.execute(f"SELECT rowid, {columns} FROM {table} ORDER BY rowid {order}"):
                rows[row[0]] = row[1:]
            break  # the forward scan read everything
        except sqlite3.DatabaseError:
            whole = False
    return [rows[k] for k in sorted(rows)], whole


def _copy_rows(old: Path, tables: tuple[str, ...], ledger: Ledger, report: Rebuilt) -> None:
    try:
        src = sqlite3.connect(f"{old.resolve().as_uri()}?mode=ro", uri=True)
        present = {r[0] for r in src.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.Error:
        if "documents" in tables:
            report.unreadable.append("all tables (the file cannot be opened)")
        return
    try:
        for table in [t for t in tables if t in present]:
            new_columns = set(ledger.db[table].columns_dict)
            columns = [r[1] for r in src.execute(f"PRAGMA table_info({table})")]
            shared = [c for c in columns if c in new_columns]
            rows, whole = _readable_rows(src, table, ", ".join(shared))
            if not whole:
                report.unreadable.append(table)
            sql = (
                f"INSERT OR IGNORE INTO {table} ({', '.join(shared)}) "
                f"VALUES ({', '.join('?' * len(shared))})"
            )
            copied = 0
            for row in rows:
                try:
                    copied += ledger.db.execute(sql, row).rowcount
                except sqlite3.IntegrityError:  # it refers to a row that was lost
                    report.left_out += 1
            report.copied[table] = copied
    finally:
        src.close()


def _manifest(folder: Path) -> dict | None:
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def _add_from_manifests(home: Path, ledger: Ledger, report: Rebuilt) -> None:
    """A ledger row for every version folder the copied rows lack, from its manifest. A folder
    whose manifest cannot be read still gets a row (it fails verification with the reason), so
    that no writer's recovery takes it for an interrupted commit and deletes it."""
    versions_dir = home / ADAPTERS / "versions"
    folders = sorted(versions_dir.iterdir()) if versions_dir.is_dir() else []
    for folder in folders:
        version = folder_version(folder.name)
        if version is None or ledger.adapter_version(version) is not None:
            continue
        manifest = _manifest(folder) or {}
        parent = manifest.get("parent")
        if parent and ledger.adapter_version(parent) is None:
            parent = None  # its row was lost and its folder collected: the chain starts here
        has_manifest = (folder / MANIFEST).is_file()
        ledger.add_adapter_version(
            version,
            parent=parent,
            base_fingerprint=manifest.get("base_fingerprint") or "unknown (manifest unreadable)",
            manifest_sha256=sha256_file(folder / MANIFEST) if has_manifest else "missing",
            created_at=manifest.get("created_at") or folder.stat().st_mtime,
            note="restored by seal doctor from its manifest"
            if manifest
            else "restored by seal doctor; manifest unreadable",
            kind=manifest.get("kind") or "continual",
            components=manifest.get("components"),
        )
        report.from_manifests.append(version)


# Of the ledger's statuses (stored, self_edited, learned, rejected, forgotten), a restored
# document is "learned", with a status_reason saying that its history was lost: a writer stored
# its passages before the ledger was lost, and the kept adapter versions may have been trained
# on it, which nothing left can tell. "stored" or "self_edited" mean "not learned yet": the chat
# would hand its passage to every close question as news (RAG off), and feeding or `seal learn`
# of the same text would learn it again as new; "rejected" and "forgotten" would hide it.
RESTORED_STATUS = "learned"
RESTORED_REASON = (
    "restored by seal doctor --rebuild from the passage store; its title, source and learning "
    "history were in the lost ledger"
)
RESTORED_SOURCE = "restored"


def _read_passage_store(home: Path, report: Rebuilt) -> dict[str, list[PassageRecord]] | None:
    """Every passage the store holds, by namespace; None (and the reason in the report) when
    there is no store or it cannot be read. Ids of damaged vectors go to the report."""
    path = home / VECTORS
    if not path.is_dir() or not any(path.iterdir()):
        return None
    from stores.passages import PassageStore  # deferred: chromadb, only where there is a store

    try:
        with PassageStore(path) as store:
            records = {ns: store.records(ns) for ns in store.namespaces()}
            ids = {ns: store.passage_ids(ns) for ns in records}
    except Exception as exc:  # noqa: BLE001 - chromadb and sqlite raise their own on damage
        report.passage_store_problem = f"{type(exc).__name__}: {exc}"
        return None
    for ns, found in ids.items():
        report.unrestored_passages += sorted(found - {r.passage_id for r in records[ns]})
    return records


def _restore_document(ledger: Ledger, doc_id: int, ns: str, records: list[PassageRecord]) -> None:
    """A documents row for a document only the passage store remembers. Its passages, in id
    order, are the words of the document in order (stores/state.py `split_passages`), so their
    content hash is the one the ledger gave the whole text, unless a passage is missing."""
    from stores.passages import content_hash  # deferred: chromadb

    text = "\n\n".join(r.text for r in records)
    digest = content_hash(text)
    if ledger.find_document(ns, digest) is not None:  # one namespace holds a text once
        digest = hashlib.sha256(f"restored document {doc_id}: {digest}".encode()).hexdigest()
    ledger.db["documents"].insert(
        {
            "id": doc_id,
            "namespace": ns,
            "source": RESTORED_SOURCE,
            "content_hash": digest,
            "chars": len(text),
            "added_at": min(r.added_at for r in records),
            "status": RESTORED_STATUS,
            "status_reason": RESTORED_REASON,
        }
    )


def _restore_from_passage_store(home: Path, ledger: Ledger, report: Rebuilt) -> None:
    """Ledger rows for the passages the store holds and the copied rows lack, under their own
    ids, and a documents row for each document the copy lacks, so that the ledger names every
    stored passage again. A passage of a forgotten document is left for the next writer to
    remove (the forget it finishes); one that names a document of another namespace is kept in
    the store and reported."""
    from stores.passages import content_hash  # deferred: chromadb

    by_namespace = _read_passage_store(home, report)
    if not by_namespace:
        return
    documents = {d["id"]: d for d in ledger.documents(include_forgotten=True)}
    named = {r[0] for r in ledger.db.execute("SELECT id FROM passages")}
    # A document id in two namespaces (only damage does that) belongs to the one holding most
    # of its passages; ties go to the first namespace in sorted order.
    spread: dict[int, Counter] = {}
    for ns, records in by_namespace.items():
        for r in records:
            spread.setdefault(r.document_id, Counter())[ns] += 1
    owner = {doc: counts.most_common(1)[0][0] for doc, counts in spread.items()}
    wanted: dict[int, list[PassageRecord]] = {}
    for ns, records in by_namespace.items():
        for r in records:
            doc = documents.get(r.document_id)
            if r.passage_id in named or (doc is not None and doc["forgotten_at"] is not None):
                continue
            if (doc["namespace"] if doc else owner[r.document_id]) == ns:
                wanted.setdefault(r.document_id, []).append(r)
            else:
                report.unrestored_passages.append(r.passage_id)
    for doc_id, records in sorted(wanted.items()):
        if doc_id not in documents:
            _restore_document(ledger, doc_id, owner[doc_id], records)
            report.restored_documents += 1
        # A passage's idx is its place among the document's passages, in id order (one
        # transaction gave them consecutive ids in the order of the text).
        known = [p["id"] for p in ledger.passages(doc_id)]
        order = sorted({*known, *(r.passage_id for r in records)})
        for r in records:
            ledger.db["passages"].insert(
                {
                    "id": r.passage_id,
                    "document_id": doc_id,
                    "idx": order.index(r.passage_id),
                    "text": r.text,
                    "content_hash": content_hash(r.text),
                    "created_at": r.added_at,
                }
            )
            report.restored_passages += 1
    report.unrestored_passages.sort()


def _restore_current(home: Path, ledger: Ledger) -> int | None:
    """The old pointer if it survived and names a live version, else the newest version whose
    files pass their checksums (None: the base model)."""
    adapters = AdapterStore(home / ADAPTERS, ledger)
    pointer = ledger.pointer("current")
    live = [r["version"] for r in ledger.adapter_versions()]
    if pointer in live:
        return pointer
    for version in reversed(live):
        try:
            adapters.verify(version)
        except SealError:
            continue
        return version
    return None


def rebuild(home: Path) -> Rebuilt:
    """Rebuild the ledger of `home` (see the module's docstring); refuses a sound ledger."""
    home = Path(home)
    marker_missing = not (home / MARKER).exists()
    if marker_missing and not ((home / LEDGER).exists() or learned_on_disk(home)):
        raise SealError(f"{home} is not a seal state folder; nothing to rebuild")
    if not marker_missing:
        read_marker(home)
    lock = WriterLock(home)
    lock.acquire()
    try:
        if marker_missing:
            write_marker(home)
        path = home / LEDGER
        if not _needs_rebuild(path):
            if marker_missing:
                return Rebuilt(kept_aside=home, marker_written=True)
            raise SealError(
                f"ledger {path} passes SQLite's check; nothing to rebuild (`seal doctor` "
                "without --rebuild lists other problems)"
            )
        report = Rebuilt(kept_aside=_set_aside(home), marker_written=marker_missing)
        ledger = Ledger(path)
        try:
            with ledger.transaction():
                old = report.kept_aside / LEDGER
                _copy_rows(old, TABLES_DOCUMENTS, ledger, report)
                _restore_from_passage_store(home, ledger, report)
                _copy_rows(old, TABLES_BEFORE_VERSIONS, ledger, report)
                _add_from_manifests(home, ledger, report)
                _copy_rows(old, TABLES_AFTER_VERSIONS, ledger, report)
                report.current = _restore_current(home, ledger)
                ledger.set_pointer("current", report.current)
                ledger.add_event(
                    "doctor",
                    REBUILT,
                    {
                        "kept_aside": str(report.kept_aside),
                        "rows_copied": sum(report.copied.values()),
                        "versions_from_manifests": report.from_manifests,
                        "current": report.current,
                        "restored_documents": report.restored_documents,
                        "restored_passages": report.restored_passages,
                        "unrestored_passages": report.unrestored_passages,
                        "passage_store_problem": report.passage_store_problem,
                    },
                )
        finally:
            ledger.close()
        return report
    finally:
        lock.release()
