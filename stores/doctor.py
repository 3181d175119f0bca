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
                    kind, components), and points `current` at the old pointer when it survived,
                    else at the newest version whose checksums hold

The adapter and base folders are the ground truth for what was learned: their manifests carry
everything a version needs to load; the ledger's documents, self-edits and history are copied
where they can be read and are otherwise kept in the set-aside file.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from agent.core.errors import SealError
from stores.adapters import AdapterStore, folder_version
from stores.folders import MANIFEST, sha256_file
from stores.ledger import Ledger
from stores.ledger_file import FRESH, SHM, WAL, file_problem, full_check, side_file
from stores.state import (
    ADAPTERS,
    LEDGER,
    MARKER,
    State,
    WriterLock,
    learned_on_disk,
    read_marker,
    write_marker,
)

# Parents before children, so that foreign keys hold as rows are copied; the versions the old
# file cannot give are added from their manifests between the two groups.
TABLES_BEFORE_VERSIONS = ("documents", "passages", "self_edits", "adapter_versions")
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
                _copy_rows(old, TABLES_BEFORE_VERSIONS, ledger, report)
                _add_from_manifests(home, ledger, report)
                _copy_rows(old, TABLES_AFTER_VERSIONS, ledger, report)
                report.current = _restore_current(home, ledger)
                ledger.set_pointer("current", report.current)
                ledger.add_event(
                    "doctor",
                    "ledger rebuilt",
                    {
                        "kept_aside": str(report.kept_aside),
                        "rows_copied": sum(report.copied.values()),
                        "versions_from_manifests": report.from_manifests,
                        "current": report.current,
                    },
                )
        finally:
            ledger.close()
        return report
    finally:
        lock.release()
