"""The ledger's SQLite file, before and while the ledger opens it: is it there, whole and sound?

A ledger that is missing or emptied while the state still holds learned adapter versions must
never be replaced by a fresh one (the writer's recovery would then delete every version no ledger
row names), and a writer must never write into a file SQLite finds damaged. Both are refused with
the way out: `seal doctor --rebuild` (stores/doctor.py), or `seal import` of an export.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from agent.core.errors import SealError, StateNotWritable

SQLITE_HEADER = b"SQLite format 3\x00"
WAL, SHM = "-wal", "-shm"
MISSING, EMPTY = "missing", "empty (0 bytes)"
FRESH = (MISSING, EMPTY)  # what a writer may start a new ledger in
# SQLite's result codes (Python 3.11's `sqlite_errorname`) that mean the file itself is damaged,
# and those that mean the folder cannot be written or read.
DAMAGED = {"SQLITE_CORRUPT", "SQLITE_NOTADB", "SQLITE_CORRUPT_INDEX", "SQLITE_CORRUPT_SEQUENCE"}
UNWRITABLE = {"SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_FULL", "SQLITE_IOERR"}


class LedgerDamaged(SealError):
    """The ledger file is missing, emptied or fails SQLite's check; nothing was written to it."""


def side_file(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def doctor_hint(home: Path) -> str:
    return (
        f"nothing was changed. `seal doctor --home {home}` shows what is wrong; `seal doctor "
        f"--rebuild --home {home}` rebuilds the ledger from the adapter manifests and the passage "
        "store (the damaged file is kept aside), or restore an export over it with `seal import "
        f"ARCHIVE --replace --home {home}` (the damaged state is kept beside it)"
    )


def file_problem(path: Path) -> str | None:
    """What is wrong with the ledger file before SQLite opens it, or None.

    A 0-byte file is an emptied ledger unless its write-ahead log holds the data: a new ledger
    whose writer was killed before its first checkpoint lives entirely in the -wal file."""
    wal = side_file(path, WAL)
    wal_bytes = wal.stat().st_size if wal.exists() else 0
    if not path.exists():
        return f"missing, but its write-ahead log {wal.name} is there" if wal_bytes else MISSING
    size = path.stat().st_size
    if size == 0:
        return None if wal_bytes else EMPTY
    with open(path, "rb") as fh:
        head = fh.read(len(SQLITE_HEADER))
    if head != SQLITE_HEADER:
        return "not an SQLite database (its header is damaged)"
    return None


def quick_check(conn: sqlite3.Connection) -> list[str]:
    """SQLite's `quick_check`: every page and b-tree is well formed (not that indexes match their
    tables, which the full integrity_check adds at O(N log N)). Empty when the file is sound.

    Measured on this 2-core CPU (`python evals/adversary.py --measure-check 20000`): 0.20 s on a
    160 MB ledger of 20,000 documents, 60,000 passages, 20,000 self-edits and 100,000 probes
    (about four days of `seal ingest` at 206 documents an hour) with the file in the page cache,
    6.2 s from a cold cache (reading 160 MB); the full integrity_check takes 0.28 s warm. Every
    writer pays it once when it opens the state (loading the model takes longer); readers do not.
    """
    found = [row[0] for row in conn.execute("PRAGMA quick_check(20)")]
    return [] if found == ["ok"] else found


def full_check(conn: sqlite3.Connection) -> list[str]:
    """SQLite's full integrity_check (indexes against their tables too) and the rows whose
    foreign keys name a missing row: what `seal doctor` checks. Empty when the file is sound."""
    found = [row[0] for row in conn.execute("PRAGMA integrity_check(20)")]
    problems = [] if found == ["ok"] else found
    orphans = conn.execute("PRAGMA foreign_key_check").fetchall()
    return problems + ([f"{len(orphans)} rows refer to missing rows"] if orphans else [])


def connect(path: Path, *, read_only: bool) -> sqlite3.Connection:
    """An autocommit connection to the ledger. A reader on a read-only folder (a read-only mount)
    cannot create the -shm file WAL mode needs; it opens the file as immutable, which is safe
    because nothing can write there either."""
    if not read_only:
        return sqlite3.connect(path, isolation_level=None)
    uri = path.resolve().as_uri()
    try:
        conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, isolation_level=None)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.OperationalError:
        if os.access(path.parent, os.W_OK):
            raise
    return sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, isolation_level=None)


def translate(exc: sqlite3.Error, path: Path) -> SealError | None:
    """The user-facing error for an SQLite failure on the ledger, or None (a bug: re-raise)."""
    name = getattr(exc, "sqlite_errorname", "")
    if name in DAMAGED or (type(exc) is sqlite3.DatabaseError and not name):
        return LedgerDamaged(f"ledger {path} is damaged ({exc}); {doctor_hint(path.parent)}")
    if name in UNWRITABLE:
        return StateNotWritable(
            f"cannot use ledger {path} ({exc}): check that {path.parent} is writable and the "
            "disk has room; `seal status` and `seal history` read a read-only state as it is"
        )
    return None


@contextmanager
def guarded(path: Path) -> Iterator[None]:
    """Turn SQLite's damaged-file and unwritable-folder errors on the ledger into SealErrors
    naming the file and the fix; any other SQLite error is a bug and passes through."""
    try:
        yield
    except sqlite3.Error as exc:
        error = translate(exc, path)
        if error is None:
            raise
        raise error from exc
