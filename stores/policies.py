"""The policy store: numbered self-edit policy LoRAs written by ReST-EM, and a `current` pointer.

Kept apart from the knowledge adapters: what the model knows and how it writes self-edits are
two learned things. Layout:

    versions/v0001/   adapter_model.safetensors, adapter_config.json, manifest.json
    current           the version number the agent uses when pointed at the store (0: base)

Version r is the policy after ReST-EM round r; version 0 is the base model itself (no folder).
A store may start with a distilled writer (`seal train-policy --distill`: version 1, round 0);
its ReST-EM rounds then start from it, round r writing version r + 1.
A version is written into a hidden temporary folder, fsynced, then renamed into place, so it
exists whole or not at all; its manifest records round, parent, base-model fingerprint, config
and the sha256 of every file, and loading checks them.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.core.errors import SealError
from agent.core.io import write_atomic
from stores.folders import commit_folder, damaged_file

MANIFEST = "manifest.json"
CURRENT = "current"
BASE = 0  # policy version 0: the model writes its own self-edits, no policy LoRA


def _version_name(version: int) -> str:
    return f"v{version:04d}"


class PolicyStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.versions_dir = self.root / "versions"

    def path(self, version: int) -> Path:
        return self.versions_dir / _version_name(version)

    def versions(self) -> list[int]:
        if not self.versions_dir.exists():
            return []
        names = [p.name for p in self.versions_dir.iterdir() if (p / MANIFEST).exists()]
        return sorted(int(n[1:]) for n in names if n.startswith("v") and n[1:].isdigit())

    def clean(self) -> list[str]:
        """Remove temporary folders a killed commit left behind; returns their names."""
        if not self.versions_dir.exists():
            return []
        left = [p for p in self.versions_dir.iterdir() if p.name.startswith(".tmp-")]
        for folder in left:
            shutil.rmtree(folder, ignore_errors=True)
        return [p.name for p in left]

    # ------------------------------------------------------------------ writing
    def commit(
        self,
        write: Callable[[Path], None],
        *,
        version: int,
        parent: int,
        base_fingerprint: str,
        config: dict[str, Any],
        stats: dict[str, Any] | None = None,
        round_: int | None = None,
    ) -> Path:
        """Store policy `version` whose files `write(folder)` produces; returns its folder.
        `round_`: the ReST-EM round that wrote it (default: the version; 0: distilled)."""
        if version < 1:
            raise ValueError("policy versions start at 1 (0 is the base model)")
        final = self.path(version)
        if final.exists():
            raise SealError(f"policy version {version} already exists at {final}")
        manifest = {
            "version": version,
            "round": version if round_ is None else round_,
            "parent": parent,
            "base_fingerprint": base_fingerprint,
            "created_at": time.time(),
            "config": config,
            "stats": stats or {},
        }
        commit_folder(final, write, manifest, what="policy")
        return final

    def origin(self) -> int:
        """The version ReST-EM round 1 samples with: the distilled writer (round 0) when the
        store starts with one, else 0 (the model itself). Round r writes version origin + r."""
        first = self.path(1) / MANIFEST
        if first.exists() and json.loads(first.read_text(encoding="utf-8")).get("round") == 0:
            return 1
        return BASE

    def set_current(self, version: int) -> None:
        if version != BASE:
            self.verify(version)
        write_atomic(self.root / CURRENT, f"{version}\n")

    # ------------------------------------------------------------------ reading
    def current(self) -> int:
        path = self.root / CURRENT
        if not path.exists():
            return BASE
        text = path.read_text(encoding="utf-8").strip()
        if not text.isdigit():
            raise SealError(f"{path} is damaged ({text[:20]!r}); write a version number into it")
        return int(text)

    def verify(self, version: int, fingerprint: str | None = None) -> dict[str, Any]:
        """Check version's files against its manifest (and its base model); its manifest."""
        folder = self.path(version)
        if not (folder / MANIFEST).exists():
            known = ", ".join(map(str, self.versions())) or "none"
            raise SealError(
                f"there is no policy version {version} in {self.root} (versions: {known}; "
                "0 is the base model); `seal train-policy` writes them"
            )
        manifest = verify_folder(folder)
        if fingerprint and manifest["base_fingerprint"] != fingerprint:
            raise SealError(
                f"policy version {version} was trained on another base model "
                f"(fingerprint {manifest['base_fingerprint']}, this model {fingerprint})"
            )
        return manifest

    def folder(self, version: int) -> Path | None:
        """The verified folder of `version`; None for version 0 (the base model)."""
        if version == BASE:
            return None
        self.verify(version)
        return self.path(version)


def verify_folder(folder: Path) -> dict[str, Any]:
    """A policy version folder's manifest, after checking every file's checksum."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        files = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SealError(f"policy {folder}: {MANIFEST} is missing or unreadable ({exc})") from exc
    problem = damaged_file(folder, files)
    if problem:
        raise SealError(
            f"policy {folder} is damaged: {problem}; train it again with `seal train-policy`"
        )
    return manifest


def resolve_policy(spec: Path | str | None, store_root: Path | None = None) -> Path | None:
    """The policy folder to write self-edits with, or None for the model itself.

    `spec`: None or "0" (base), a version number in `store_root`, "current", a version folder
    (holds manifest.json) or a store folder (holds versions/: its current version).
    """
    if spec is None:
        return None
    text = str(spec)
    if text.isdigit() or text == "current":
        if store_root is None:
            raise SealError(f"policy {text!r} names a version, but no policy store is given")
        store = PolicyStore(store_root)
        return store.folder(store.current() if text == "current" else int(text))
    folder = Path(spec).expanduser()
    if (folder / MANIFEST).exists():
        verify_folder(folder)
        return folder
    if (folder / "versions").is_dir():
        store = PolicyStore(folder)
        return store.folder(store.current())
    raise SealError(
        f"policy {folder} is neither a policy version folder (with {MANIFEST}) nor a policy "
        "store (with versions/); `seal train-policy --out DIR` writes one"
    )
