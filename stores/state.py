"""The state folder: the agent's whole memory under one directory, opened by one writer at a time.

    HOME/seal-home.json   marker: this folder is a seal state, and its format version
    HOME/lock             held (flock) by the one writing process; it names that process
    HOME/ledger.sqlite    the ledger (stores.ledger)
    HOME/vectors/         the passage store (stores.passages, chromadb)
    HOME/adapters/        the adapter store (stores.adapters)
    HOME/bases/           base models adapters were merged into (stores.bases)

A writer takes the lock, upgrades the ledger, and recovers what a killed writer left half-done.
Readers (`seal status`, a read-only chat) take no lock. A folder that is not empty and has no
marker, or whose marker is damaged, is refused: it is never silently reset.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.core.config import StoreConfig
from agent.core.errors import SealError, StateLocked, StateNotWritable
from agent.core.io import read_limited, write_atomic
from stores.adapters import AdapterStore
from stores.bases import BaseStore
from stores.ledger import Ledger
from stores.ledger_file import FRESH, LedgerDamaged, doctor_hint, file_problem

if TYPE_CHECKING:
    from stores.passages import PassageStore

MARKER = "seal-home.json"
FORMAT = "seal-agent-state"
FORMAT_VERSION = 1
LEDGER = "ledger.sqlite"
VECTORS = "vectors"
ADAPTERS = "adapters"
BASES = "bases"
LOCK = "lock"
REBUILT = "ledger rebuilt"  # the subject of `seal doctor --rebuild`'s event
NEAR_DUPLICATE_SIMILARITY = StoreConfig.model_fields["near_duplicate_similarity"].default


def default_home(environ: dict[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    if env.get("SEAL_HOME"):
        return Path(env["SEAL_HOME"]).expanduser()
    data = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data).expanduser() / "seal-agent"


def read_marker(home: Path) -> dict[str, Any]:
    path = home / MARKER
    try:
        marker = json.loads(read_limited(path, 1 << 16, "state marker"))
    except (SealError, ValueError) as exc:
        raise SealError(
            f"{path} is damaged ({exc}); the state in {home} is left as it is: restore it with "
            "`seal import ARCHIVE --home NEW_FOLDER`, or repair the file by hand"
        ) from exc
    if not isinstance(marker, dict) or marker.get("format") != FORMAT:
        raise SealError(f"{path} does not describe a seal state folder; use another --home")
    if marker.get("version", 0) > FORMAT_VERSION:
        raise SealError(
            f"{home} was written by a newer seal-agent (state format {marker['version']}, this "
            f"one reads {FORMAT_VERSION}); upgrade seal-agent"
        )
    return marker


def check_home(home: Path, *, create: bool) -> bool:
    """True when `home` holds a seal state; creates one when asked and the folder is empty."""
    if home.exists() and not home.is_dir():
        raise SealError(f"--home {home} is a file, not a folder")
    if (home / MARKER).exists():
        read_marker(home)
        return True
    entries = list(home.iterdir()) if home.exists() else []
    # A writer killed while creating the marker leaves only the marker's temporary file behind.
    leftovers = [p for p in entries if p.name.startswith(f".{MARKER}.")]
    if len(leftovers) < len(entries):
        if (home / LEDGER).exists() or learned_on_disk(home):
            raise SealError(
                f"{home} holds a seal state whose marker {MARKER} is missing; nothing was "
                f"changed. `seal doctor --rebuild --home {home}` writes it again"
            )
        raise SealError(
            f"{home} is not empty and is not a seal state folder (no {MARKER}); "
            "use an empty or new folder as --home"
        )
    if not create:
        return False
    try:
        for leftover in leftovers:
            leftover.unlink()
        home.mkdir(parents=True, exist_ok=True)
        write_marker(home)
    except OSError as exc:
        raise StateNotWritable(not_writable(home, exc)) from None
    return True


def write_marker(home: Path) -> None:
    marker = {"format": FORMAT, "version": FORMAT_VERSION, "created_at": time.time()}
    write_atomic(home / MARKER, json.dumps(marker, indent=2) + "\n")


def not_writable(home: Path, exc: OSError) -> str:
    return (
        f"cannot write to the state folder {home} ({exc.strerror}): this command needs a "
        "writable one; `seal status`, `seal history`, `seal chat` (read-only) and `seal export` "
        "work on it as it is"
    )


def learned_on_disk(home: Path) -> list[str]:
    """What a state holds beside its ledger: adapter versions, merged bases, stored passages.
    A missing or emptied ledger next to any of them is damage, never a fresh start."""
    held = []
    versions = sorted(p.name for p in (home / ADAPTERS / "versions").glob("v[0-9]*"))
    if versions:
        span = versions[0] if len(versions) == 1 else f"{versions[0]}..{versions[-1]}"
        held.append(f"{len(versions)} adapter versions ({span})")
    bases = sorted(p.name for p in (home / BASES).glob("b[0-9]*"))
    if bases:
        held.append(f"{len(bases)} merged bases")
    if (home / VECTORS).is_dir() and any((home / VECTORS).iterdir()):
        held.append(f"a passage store ({VECTORS}/)")
    return held


def refuse_lost_ledger(home: Path) -> None:
    """A missing or empty ledger beside learned adapters is refused: a writer would otherwise
    start a fresh ledger, and its recovery delete every version the new ledger does not name."""
    path = home / LEDGER
    problem = file_problem(path)
    held = learned_on_disk(home) if problem in FRESH else []
    if held:
        raise LedgerDamaged(
            f"ledger {path} is {problem} but {home} holds {', '.join(held)}; " + doctor_hint(home)
        )


def kept_by_rebuild(ledger: Ledger) -> set[int] | None:
    """The passages `seal doctor --rebuild` found in the passage store and could not name in
    the ledger it rebuilt (they may be the only copy of a lost ledger's text): writers keep
    them. None: keep every passage the ledger does not name, as the doctor could not read the
    store (or predates restoring from it); empty when the ledger was never rebuilt."""
    kept: set[int] = set()
    query = "SELECT detail FROM events WHERE kind = 'doctor' AND subject = ?"
    for row in ledger.db.query(query, [REBUILT]):
        try:
            detail = json.loads(row["detail"] or "{}")
        except ValueError:
            return None
        ids = detail.get("unrestored_passages") if isinstance(detail, dict) else None
        if not isinstance(ids, list) or detail.get("passage_store_problem"):
            return None
        kept.update(int(i) for i in ids)
    return kept


class WriterLock:
    """An exclusive flock on HOME/lock; the kernel drops it when the process dies, even by -9."""

    def __init__(self, home: Path):
        self.path = home / LOCK
        self.fd: int | None = None

    def acquire(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StateNotWritable(not_writable(self.path.parent, exc)) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise StateLocked(
                f"{self.path.parent} is in use by {holder}; wait for it to finish or stop it "
                "(read-only commands such as `seal status` work meanwhile)"
            ) from None
        os.ftruncate(fd, 0)
        command = " ".join(Path(sys.argv[0]).name.split() + sys.argv[1:])[:200]
        os.pwrite(fd, f"pid {os.getpid()} ({command})\n".encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


@dataclass
class DocumentResult:
    document_id: int | None
    passage_ids: list[int] = field(default_factory=list)
    duplicate_of: int | None = None  # an identical document already stored
    near_duplicates: list[tuple[int, int, float]] = field(default_factory=list)
    refused_passages: list[tuple[int, int]] = field(default_factory=list)


def split_passages(text: str, max_words: int) -> list[str]:
    """Whole paragraphs packed into passages of at most `max_words` words; longer ones are cut."""
    pieces = []
    for paragraph in re.split(r"\n\s*\n", text):
        words = paragraph.split()
        pieces += [words[i : i + max_words] for i in range(0, len(words), max_words)]
    passages: list[str] = []
    current: list[list[str]] = []
    for piece in pieces:
        if current and sum(map(len, current)) + len(piece) > max_words:
            passages.append("\n\n".join(" ".join(words) for words in current))
            current = []
        current.append(piece)
    if current:
        passages.append("\n\n".join(" ".join(words) for words in current))
    return passages


class State:
    """Ledger, passage store and adapter store of one home folder.

    Open with `State.open(home)` for writing (takes the lock, recovers) or
    `State.open(home, read_only=True)`; use as a context manager or call `close()`."""

    def __init__(
        self,
        home: Path,
        ledger: Ledger,
        lock: WriterLock | None,
        recovered: list[str],
        near_duplicate_similarity: float = NEAR_DUPLICATE_SIMILARITY,
    ):
        self.home = home
        self.near_duplicate_similarity = near_duplicate_similarity
        self.ledger = ledger
        self.adapters = AdapterStore(home / ADAPTERS, ledger)
        self.bases = BaseStore(home / BASES)
        self.lock = lock
        self.recovered = recovered
        self._passages: PassageStore | None = None
        self._vectors_copy: Path | None = None  # a read-only mount's passage store, copied
        self._reconciled: set[str] = set()  # namespaces whose vectors match the ledger

    @classmethod
    def open(
        cls,
        home: Path,
        *,
        read_only: bool = False,
        near_duplicate_similarity: float = NEAR_DUPLICATE_SIMILARITY,
    ) -> State:
        """`near_duplicate_similarity`: store.near_duplicate_similarity, the cosine similarity at
        which a new passage is reported as a near duplicate of a stored one."""
        home = Path(home).expanduser()
        if not check_home(home, create=not read_only):
            raise SealError(
                f"no seal state in {home} yet; it is created by the first command that stores "
                "something (or pass --home)"
            )
        refuse_lost_ledger(home)
        if read_only:
            ledger = Ledger(home / LEDGER, read_only=True)
            return cls(home, ledger, None, [], near_duplicate_similarity)
        lock = WriterLock(home)
        lock.acquire()
        try:
            ledger = Ledger(home / LEDGER)
            state = cls(home, ledger, lock, [], near_duplicate_similarity)
            state.recovered = state.adapters.recover() + state.bases.recover()
            state.recovered += [
                f"b{b:06d}: merged base no version uses (merge interrupted?)"
                for b in state.collect_bases()
            ]
            for leftover in home.glob(".candidate-*"):  # an update killed while training
                shutil.rmtree(leftover, ignore_errors=True)
                state.recovered.append(f"{leftover.name}: unfinished update")
        except BaseException:
            lock.release()
            raise
        return state

    def view(self, ledger: Ledger) -> State:
        """This state seen through another ledger connection (a worker thread's own), under the
        same lock and sharing the passage store: one chroma client per folder and process."""
        view = State(self.home, ledger, self.lock, [], self.near_duplicate_similarity)
        view._passages = self.passages
        return view

    @property
    def read_only(self) -> bool:
        return self.lock is None

    @property
    def passages(self) -> PassageStore:
        """The vector store, opened on first use (chromadb takes a few seconds to import).

        chromadb opens its database for writing, even to read: a read-only state on a folder
        that cannot be written (a read-only mount) reads a temporary copy of the store, so the
        chat still retrieves and answers there."""
        if self._passages is None:
            from stores.passages import PassageStore  # deferred: chromadb

            path = self.home / VECTORS
            if self.read_only and not os.access(path if path.exists() else self.home, os.W_OK):
                self._vectors_copy = Path(tempfile.mkdtemp(prefix="seal-vectors-"))
                if path.is_dir():
                    shutil.copytree(path, self._vectors_copy / VECTORS)
                path = self._vectors_copy / VECTORS
            self._passages = PassageStore(
                path, near_duplicate_threshold=self.near_duplicate_similarity
            )
        return self._passages

    def close(self) -> None:
        if self._passages is not None:
            self._passages.close()
        if self._vectors_copy is not None:
            shutil.rmtree(self._vectors_copy, ignore_errors=True)
            self._vectors_copy = None
        self.ledger.close()
        if self.lock:
            self.lock.release()

    def __enter__(self) -> State:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def add_document(
        self,
        text: str,
        *,
        source: str,
        namespace: str,
        passage_words: int,
        uri: str | None = None,
        title: str | None = None,
        fetched_at: float | None = None,
    ) -> DocumentResult:
        """Store a document: ledger rows first, then vectors (the ledger is the source of truth).

        An identical document already stored is not stored again (`duplicate_of` says which)."""
        from stores.passages import PassageRecord, check_namespace, content_hash  # chromadb

        if not text.strip():
            raise SealError(f"document {uri or title or ''} is empty; nothing to store".strip())
        check_namespace(namespace)
        if namespace not in self._reconciled:
            self.reconcile_vectors(namespace)
            self._reconciled.add(namespace)
        digest = content_hash(text)
        known = self.ledger.find_document(namespace, digest)
        if known:
            return DocumentResult(None, duplicate_of=known["id"])
        chunks = split_passages(text, passage_words)
        doc_id, ids = self.ledger.add_document(
            namespace=namespace,
            source=source,
            uri=uri,
            title=title,
            content_hash=digest,
            chars=len(text),
            passages=[(chunk, content_hash(chunk)) for chunk in chunks],
            fetched_at=fetched_at,
        )
        now = time.time()
        added = self.passages.add(
            namespace,
            [PassageRecord(i, doc_id, chunk, now) for i, chunk in zip(ids, chunks, strict=True)],
        )
        return DocumentResult(
            doc_id,
            passage_ids=ids,
            near_duplicates=added.near_duplicates,
            refused_passages=added.duplicates,
        )

    def reconcile_vectors(self, namespace: str) -> dict[str, int]:
        """Make the vector store match the ledger after a crash between the two writes (or
        between a forget's ledger rows and its vector deletion); returns what it changed.

        Vectors the ledger does not name (a write whose ledger rows rolled back) are removed,
        except those `seal doctor --rebuild` found and could not name in the ledger it rebuilt:
        they may be the only copy of a lost ledger's text, so they are kept and counted ("kept")
        unless their document is known as forgotten."""
        from stores.passages import PassageRecord  # deferred: chromadb

        rows = {r["id"]: r for r in self.ledger.live_passages(namespace)}
        stored = self.passages.passage_ids(namespace)
        stale = stored - rows.keys()
        kept = self._unnamed_to_keep(namespace, stale)
        missing = [rows[i] for i in sorted(rows.keys() - stored)]
        self.passages.delete_passages(namespace, stale - kept)
        if missing:
            self.passages.add(
                namespace,
                [
                    PassageRecord(r["id"], r["document_id"], r["text"], r["created_at"])
                    for r in missing
                ],
            )
        return {"removed": len(stale - kept), "added": len(missing), "kept": len(kept)}

    def _unnamed_to_keep(self, namespace: str, unnamed: set[int]) -> set[int]:
        """Of the vectors the ledger does not name, those a lost ledger may have named (what the
        last rebuild could not restore), unless their document is known as forgotten."""
        keep = kept_by_rebuild(self.ledger)
        kept = set(unnamed) if keep is None else unnamed & keep
        if not kept:
            return kept
        forgotten = {
            d["id"]
            for d in self.ledger.documents(include_forgotten=True)
            if d["forgotten_at"] is not None
        }
        records = self.passages.records(namespace, sorted(kept))
        return kept - {r.passage_id for r in records if r.document_id in forgotten}

    def forget(self, document_id: int) -> dict[str, Any]:
        """Remove a document's passages and vectors; its self-edits leave the replay pool."""
        doc = self.ledger.document(document_id)
        if doc["forgotten_at"] is not None:
            raise SealError(f"document {document_id} was already forgotten")
        # Vectors first: a crash in between leaves the document known, so forgetting it again
        # finishes the job, and retrieval never returns a forgotten passage.
        vectors = self.passages.delete_document(doc["namespace"], document_id)
        counts = self.ledger.forget_document(document_id)
        counts["vectors"] = vectors
        counts["trained_into"] = self.ledger.versions_trained_on(document_id)
        return counts

    def base_for(self, version: int) -> int | None:
        """The merged base adapter `version` was trained on; None: the configured model."""
        if not version:
            return None
        row = self.ledger.adapter_version(version)
        if row is None:
            raise SealError(
                f"the ledger has no adapter version {version}; `seal status` lists the kept "
                "versions and `seal rollback N` makes one current"
            )
        return self.bases.find(row["base_fingerprint"])

    def collect_bases(self) -> list[int]:
        """Remove the merged bases that no live adapter version was trained on."""
        live = {r["base_fingerprint"] for r in self.ledger.adapter_versions()}
        return self.bases.gc(live)

    def disk_bytes(self) -> dict[str, int]:
        def size(path: Path) -> int:
            if path.is_file():
                return path.stat().st_size
            return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())

        ledger = sum(size(p) for p in self.home.glob(LEDGER + "*"))
        vectors = size(self.home / VECTORS) if (self.home / VECTORS).exists() else 0
        adapters = self.adapters.disk_bytes()
        bases = size(self.home / BASES) if (self.home / BASES).exists() else 0
        return {"ledger": ledger, "vectors": vectors, "adapters": adapters, "bases": bases}
