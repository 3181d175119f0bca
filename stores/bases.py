"""The base store: base models that knowledge adapters were merged into.

    bases/b000001/   config.json, model.safetensors, tokenizer files, manifest.json

A merged base is a full transformers folder. Which base a process loads follows from the current
adapter version: its manifest names the fingerprint of the base it was trained on, and the base
with that fingerprint is loaded (none: the configured model). So rolling back to a version from
before a merge also goes back to the base it needs, and nothing else points at a base.

A base is written into a hidden temporary folder, fsynced and renamed into place, like an adapter
version. It is kept while a live adapter version was trained on it; `gc` removes the others.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from agent.core.errors import SealError
from agent.core.io import fsync_dir
from stores.folders import MANIFEST, commit_folder, damaged_file


def _folder_base(name: str) -> int | None:
    if len(name) == 7 and name.startswith("b") and name[1:].isdigit():
        return int(name[1:])
    return None


class BaseStore:
    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, base: int) -> Path:
        return self.root / f"b{base:06d}"

    def bases(self) -> list[int]:
        if not self.root.is_dir():
            return []
        return sorted(n for p in self.root.iterdir() if (n := _folder_base(p.name)) is not None)

    def commit(
        self,
        write: Callable[[Path], None],
        *,
        fingerprint: str,
        lineage: Sequence[str],
        merged_version: int,
        dtype: str,
    ) -> int:
        """Store a base whose files `write(folder)` produces; returns its number. `lineage`: the
        fingerprints of the bases it descends from, oldest first (the configured model's first),
        the base it was merged into last."""
        base = max(self.bases(), default=0) + 1
        manifest = {
            "base": base,
            "fingerprint": fingerprint,
            "parent_fingerprint": lineage[-1],
            "lineage": list(lineage),
            "merged_version": merged_version,
            "dtype": dtype,
            "created_at": time.time(),
        }
        commit_folder(self.path(base), write, manifest, what="merged base")
        return base

    def manifest(self, base: int) -> dict[str, Any]:
        path = self.path(base) / MANIFEST
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SealError(
                f"merged base {path.parent} is damaged ({exc}); roll back to a version from "
                "before the merge (`seal history` lists them) or restore an export"
            ) from exc

    def lineage(self, base: int) -> list[str]:
        """The fingerprints of the bases this one descends from, oldest first."""
        return self.manifest(base)["lineage"]

    def find(self, fingerprint: str) -> int | None:
        """The merged base with this fingerprint, or None (the configured model)."""
        for base in self.bases():
            if self.manifest(base)["fingerprint"] == fingerprint:
                return base
        return None

    def verify(self, base: int) -> dict[str, Any]:
        """The manifest, after checking every file's sha256."""
        manifest = self.manifest(base)
        folder = self.path(base)
        problem = damaged_file(folder, manifest["files"])
        if problem:
            raise SealError(
                f"merged base {folder}: {problem}; roll back to a version from before the "
                "merge or restore an export"
            )
        return manifest

    def gc(self, keep_fingerprints: Iterable[str]) -> list[int]:
        """Remove the bases no kept adapter version was trained on."""
        keep = set(keep_fingerprints)
        removed = []
        for base in self.bases():
            if self.manifest(base)["fingerprint"] not in keep:
                shutil.rmtree(self.path(base))
                removed.append(base)
        if removed:
            fsync_dir(self.root)
        return removed

    def recover(self) -> list[str]:
        """Remove what a killed commit left: temporary folders."""
        if not self.root.is_dir():
            return []
        leftovers = [p for p in self.root.iterdir() if p.name.startswith(".tmp-")]
        for path in leftovers:
            shutil.rmtree(path, ignore_errors=True)
        return [f"removed an unfinished merged base {p.name}" for p in leftovers]
