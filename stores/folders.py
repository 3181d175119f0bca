"""Store folders written whole or not at all, with a manifest of sha256 checksums: the commit
protocol the adapter, merged-base and policy stores share, and the check that reads it back."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.core.errors import SealError
from agent.core.io import fsync_dir

MANIFEST = "manifest.json"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_digests(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder`, by its relative path: what a manifest records."""
    return {
        p.relative_to(folder).as_posix(): sha256_file(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def damaged_file(folder: Path, digests: dict[str, str]) -> str | None:
    """What is wrong with the first file of `digests` that is missing or fails its checksum."""
    for name, digest in digests.items():
        if not (folder / name).is_file():
            return f"{name} is missing"
        if sha256_file(folder / name) != digest:
            return f"{name} fails its checksum"
    return None


def fsync_tree(folder: Path) -> None:
    for path in sorted(folder.rglob("*"), reverse=True):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
        else:
            fsync_dir(path)
    fsync_dir(folder)


def commit_folder(
    final: Path, write: Callable[[Path], None], manifest: dict[str, Any], *, what: str
) -> dict[str, Any]:
    """Create the folder `final` whole or not at all: `write(tmp)` fills a temporary sibling
    (named .tmp-*, which the stores' recovery removes), its MANIFEST gets `manifest` plus the
    sha256 of every file, everything is fsynced, then the folder is renamed into place. Returns
    the manifest written; `what` names the writer when it produced no files."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        write(tmp)
        files = file_digests(tmp)
        if not files:
            raise SealError(f"the {what} writer produced no files")
        manifest = {**manifest, "files": files}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        fsync_tree(tmp)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(final.parent)
    return manifest
