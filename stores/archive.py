"""Export the whole state as one .tar.gz archive, and import it into a new or replaced home.

The archive holds a consistent snapshot (taken under the writer lock; the ledger through SQLite's
backup API), plus `export.json` listing the sha256 of every member. Import extracts beside the
target, checks every checksum, the ledger and every adapter version, and only then moves the
result into place; a home it replaces is kept under a new name, never deleted.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import tarfile
import tempfile
import time
from pathlib import Path

from agent.core.errors import SealError
from agent.core.io import fsync_dir
from stores.folders import damaged_file, file_digests
from stores.state import (
    ADAPTERS,
    BASES,
    LEDGER,
    MARKER,
    VECTORS,
    State,
    WriterLock,
    check_home,
)

EXPORT_MANIFEST = "export.json"
ROOT = "seal-state"


def _snapshot(state: State, folder: Path) -> None:
    """Copy the state into `folder`: ledger by backup API, live adapter versions, merged bases,
    vectors."""
    shutil.copy2(state.home / MARKER, folder / MARKER)
    target = sqlite3.connect(folder / LEDGER)
    try:
        state.ledger.db.conn.backup(target)
    finally:
        target.close()
    if (state.home / VECTORS).exists():
        shutil.copytree(state.home / VECTORS, folder / VECTORS)
    adapters = folder / ADAPTERS
    (adapters / "versions").mkdir(parents=True)
    for row in state.ledger.adapter_versions():
        state.adapters.verify(row["version"])
        path = state.adapters.path(row["version"])
        shutil.copytree(path, adapters / "versions" / path.name)
    for base in state.bases.bases():
        state.bases.verify(base)
        shutil.copytree(state.bases.path(base), folder / BASES / state.bases.path(base).name)


def export_state(state: State, archive: Path) -> dict:
    """Write the archive atomically; returns its export manifest."""
    if state.read_only and os.access(state.home, os.W_OK):
        # A folder nothing can write (a read-only mount) is consistent without the lock.
        raise SealError("export needs the writer lock, so that the snapshot is consistent")
    archive = Path(archive)
    if archive.suffixes[-2:] != [".tar", ".gz"]:
        raise SealError(f"{archive}: the archive name must end in .tar.gz")
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=archive.parent, prefix=".seal-export-") as tmp:
        folder = Path(tmp) / ROOT
        folder.mkdir()
        _snapshot(state, folder)
        files = file_digests(folder)
        manifest = {
            "format": "seal-agent-export",
            "version": 1,
            "exported_at": time.time(),
            "source_home": str(state.home),
            "files": files,
        }
        (folder / EXPORT_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        partial = Path(tmp) / "archive.tar.gz"
        with tarfile.open(partial, "w:gz") as tar:
            tar.add(folder, arcname=ROOT)
        with open(partial, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(partial, archive)
    fsync_dir(archive.parent)
    return manifest


def _check_extracted(folder: Path, archive: Path) -> dict:
    try:
        manifest = json.loads((folder / EXPORT_MANIFEST).read_text(encoding="utf-8"))
        files = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SealError(f"{archive} is not a seal export ({EXPORT_MANIFEST}: {exc})") from exc
    problem = damaged_file(folder, files)
    if problem:
        raise SealError(f"{archive} is damaged: {problem}")
    (folder / EXPORT_MANIFEST).unlink()
    check_home(folder, create=False)
    return manifest


def import_state(archive: Path, home: Path, *, replace: bool = False) -> Path | None:
    """Install the archive's state as `home`. Returns where a replaced home was moved, if any."""
    archive, home = Path(archive), Path(home).expanduser()
    if not archive.is_file():
        raise SealError(f"{archive} does not exist or is not a file")
    has_state = check_home(home, create=False)
    if has_state and not replace:
        raise SealError(
            f"{home} already holds a seal state; import into a new --home, or pass --replace "
            "(the current state is kept beside it under a new name)"
        )
    home.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=home.parent, prefix=".seal-import-") as tmp:
        try:
            with tarfile.open(archive, "r:gz") as tar:
                tar.extractall(tmp, filter="data")
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise SealError(f"{archive} cannot be read as a .tar.gz archive ({exc})") from exc
        folder = Path(tmp) / ROOT
        manifest = _check_extracted(folder, archive)
        with State.open(folder) as state:  # upgrades the ledger if it is older, checks adapters
            errors = state.ledger.integrity_errors()
            if errors:
                raise SealError(f"{archive}: the ledger fails its integrity check: {errors[0]}")
            for row in state.ledger.adapter_versions():
                state.adapters.verify(row["version"])
            for base in state.bases.bases():
                state.bases.verify(base)
            state.ledger.add_event(
                "import", str(archive), {"exported_at": manifest.get("exported_at")}
            )
        (folder / "lock").unlink(missing_ok=True)
        moved = None
        if has_state:
            moved = home.with_name(f"{home.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
            # Take the old home's lock first, so no writer is mid-update while it moves. Only the
            # lock: opening its ledger would refuse a damaged one, the state an export replaces.
            lock = WriterLock(home)
            lock.acquire()
            try:
                os.rename(home, moved)
            finally:
                lock.release()
        elif home.exists():
            home.rmdir()  # empty: check_home refused anything else
        os.rename(folder, home)
        fsync_dir(home.parent)
    return moved
