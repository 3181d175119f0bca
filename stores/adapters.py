"""The adapter store: numbered LoRA versions in PEFT format, a `current` pointer, rollback and GC.

Layout under the store's root:

    versions/v000001/   adapter_model.safetensors, adapter_config.json, manifest.json

A commit writes into a hidden temporary folder, fsyncs every file, renames the folder into place,
then records the version in the ledger; the version exists only once its ledger row does. The
`current` pointer is a ledger row, so switching it commits in the same transaction as the update
that justifies it. `recover()` (run by every writer at open) clears what a killed commit or
collection left behind.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.core.errors import SealError
from agent.core.io import fsync_dir
from stores.folders import MANIFEST, commit_folder, damaged_file, sha256_file
from stores.ledger import Ledger

BASE = 0  # the version number of "no adapter": the base model alone


def folder_version(name: str) -> int | None:
    if len(name) == 7 and name.startswith("v") and name[1:].isdigit():
        return int(name[1:])
    return None


class AdapterStore:
    def __init__(self, root: Path, ledger: Ledger):
        self.root = Path(root)
        self.ledger = ledger
        self.versions_dir = self.root / "versions"

    def path(self, version: int) -> Path:
        return self.versions_dir / f"v{version:06d}"

    def _require_writer(self) -> None:
        if self.ledger.read_only:
            raise SealError(f"the adapter store {self.root} is open read-only")

    # writing

    def commit(
        self,
        write: Callable[[Path], None],
        *,
        parent: int | None,
        base_fingerprint: str,
        config: dict[str, Any],
        note: str | None = None,
        kind: str = "continual",
        components: list[int] | None = None,
    ) -> int:
        """Store a new version whose files `write(folder)` produces; returns its number.
        `kind`: continual, document (one document's own adapter) or consolidated (a combination
        of the document adapters listed in `components`).

        `current` is not moved: the caller decides (see `set_current`)."""
        self._require_writer()
        if parent:
            self.verify(parent)
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        version = self._next_version()
        created_at = time.time()
        manifest = {
            "version": version,
            "parent": parent or None,
            "base_fingerprint": base_fingerprint,
            "created_at": created_at,
            "note": note,
            "kind": kind,
            "components": components,
            "config": config,
        }
        commit_folder(self.path(version), write, manifest, what="adapter")
        self.ledger.add_adapter_version(
            version,
            parent=parent or None,
            base_fingerprint=base_fingerprint,
            manifest_sha256=sha256_file(self.path(version) / MANIFEST),
            created_at=created_at,
            note=note,
            kind=kind,
            components=components,
        )
        return version

    def _next_version(self) -> int:
        on_disk = [folder_version(p.name) or 0 for p in self.versions_dir.iterdir()]
        return max([self.ledger.max_adapter_version(), *on_disk]) + 1

    def set_current(self, version: int) -> None:
        """Point `current` at a verified version (or BASE); joins an open ledger transaction."""
        self._require_writer()
        if version != BASE:
            self.verify(version)
        self.ledger.set_pointer("current", version or None)

    def rollback(self, version: int, reason: str = "seal rollback") -> int:
        """Make `version` current again; returns the version it replaced."""
        previous = self.ledger.pointer("current") or BASE  # may be the damage this repairs
        with self.ledger.transaction():
            self.set_current(version)
            self.ledger.add_event(
                "rollback",
                f"version {version}",
                {"from": previous, "to": version, "reason": reason},
            )
        return previous

    def pin(self, version: int, pinned: bool = True) -> None:
        self._require_writer()
        self._ledger_row(version)
        self.ledger.set_pinned(version, pinned)

    def gc(self, keep_last: int) -> list[int]:
        """Delete all but the newest `keep_last` versions, never the current or a pinned one,
        nor the document adapters a kept combination is made of."""
        self._require_writer()
        rows = self.ledger.adapter_versions()
        keep = {r["version"] for r in rows[-keep_last:]} if keep_last > 0 else set()
        keep |= {self.current()} | {r["version"] for r in rows if r["pinned"]}
        for version in list(keep):  # a kept combination needs its document adapters
            keep |= set(self.components(version))
        doomed = [r["version"] for r in rows if r["version"] not in keep]
        # Ledger first: a version marked collected is never loaded again, whatever happens to
        # its folder; recover() removes folders left behind by a crash here.
        self.ledger.mark_collected(doomed)
        for version in doomed:
            self._remove_folder(self.path(version))
        return doomed

    def _remove_folder(self, folder: Path) -> None:
        if not folder.exists():
            return
        trash = folder.with_name(f".trash-{folder.name}-{uuid.uuid4().hex[:8]}")
        os.rename(folder, trash)
        shutil.rmtree(trash)

    def recover(self) -> list[str]:
        """Undo what a killed writer left half-done; returns what was cleaned, for the log."""
        self._require_writer()
        if not self.versions_dir.exists():
            return []
        cleaned = []
        known = {r["version"]: r for r in self.ledger.adapter_versions(include_collected=True)}
        for folder in sorted(self.versions_dir.iterdir()):
            version = folder_version(folder.name)
            row = known.get(version) if version else None
            if folder.name.startswith((".tmp-", ".trash-")):
                reason = "unfinished write"
            elif version is None:
                continue  # not ours; leave it alone
            elif row is None:
                reason = "commit interrupted before its ledger row"
            elif row["collected_at"] is not None:
                reason = "collection interrupted"
            else:
                continue
            shutil.rmtree(folder, ignore_errors=True)
            cleaned.append(f"{folder.name}: {reason}")
        if cleaned:
            fsync_dir(self.versions_dir)
        # A damaged current version is not checked here: that would lock the user out of
        # `seal rollback`, the way to repair it. Loading it fails with the reason instead.
        return cleaned

    # reading

    def current(self) -> int:
        """The current version (BASE: none). A pointer the ledger cannot back (a version it does
        not hold or collected, or a pointer row deleted after updates set it) is an error naming
        the version and the way back, never silently the base model."""
        version = self.ledger.pointer("current")
        if version is None:
            if not self.ledger.has_pointer("current") and self.ledger.pointer_was_moved():
                raise SealError(
                    "the ledger lost its `current` adapter pointer (updates had set it); "
                    + self._way_back()
                )
            return BASE
        row = self.ledger.adapter_version(version)
        if row is None or row["collected_at"] is not None:
            what = "that the ledger does not hold" if row is None else "that was garbage-collected"
            raise SealError(
                f"the current adapter pointer names version {version}, {what}; " + self._way_back()
            )
        return version

    def _way_back(self) -> str:
        kept = [r["version"] for r in self.ledger.adapter_versions()]
        newest = (
            f"the newest kept version is {kept[-1]}: `seal rollback {kept[-1]}`"
            if kept
            else ("no version is kept")
        )
        return f"{newest}; `seal rollback 0` answers with the base model (`seal status` lists them)"

    def components(self, version: int) -> list[int]:
        """The document adapters a consolidated version combines; [] for any other version."""
        row = self.ledger.adapter_version(version) if version else None
        return json.loads(row["components"]) if row and row["components"] else []

    def _ledger_row(self, version: int) -> dict[str, Any]:
        row = self.ledger.adapter_version(version)
        if row is None:
            raise SealError(f"there is no adapter version {version}; `seal status` lists them")
        if row["collected_at"] is not None:
            raise SealError(f"adapter version {version} was garbage-collected")
        return row

    def manifest(self, version: int) -> dict[str, Any]:
        path = self.path(version) / MANIFEST
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SealError(
                f"adapter version {version}: manifest {path} unreadable ({exc})"
            ) from exc

    def verify(self, version: int) -> dict[str, Any]:
        """Check the version against its ledger row and every file's checksum; its manifest."""
        row = self._ledger_row(version)
        folder = self.path(version)
        damaged = f"adapter version {version} at {folder} is damaged"
        advice = "roll back to another version (`seal rollback VERSION`)"
        if not (folder / MANIFEST).exists():
            raise SealError(f"{damaged}: {MANIFEST} is missing; {advice}")
        if sha256_file(folder / MANIFEST) != row["manifest_sha256"]:
            raise SealError(f"{damaged}: {MANIFEST} does not match the ledger; {advice}")
        manifest = self.manifest(version)
        problem = damaged_file(folder, manifest["files"])
        if problem:
            raise SealError(f"{damaged}: {problem}; {advice}")
        return manifest

    def load_into(self, runtime, version: int | None = None) -> int:
        """Load `version` (default: current) into the runtime's adapter; BASE resets it."""
        version = self.current() if version is None else version
        if version == BASE:
            runtime.reset_adapter()
            return version
        manifest = self.verify(version)
        if manifest["base_fingerprint"] != runtime.fingerprint():
            raise SealError(
                f"adapter version {version} was trained on another base model (fingerprint "
                f"{manifest['base_fingerprint']}, the loaded model is {runtime.fingerprint()}); "
                "load the model it was trained on, or use another --home"
            )
        runtime.load_adapter(self.path(version))
        return version

    def disk_bytes(self) -> int:
        if not self.versions_dir.exists():
            return 0
        return sum(p.stat().st_size for p in self.versions_dir.rglob("*") if p.is_file())
