"""Deduplication: canonical URLs, content hashes, and near-duplicate stories.

Exact duplicates are caught by the content hash (the ledger's, `stores.passages.content_hash`).
An updated version of a stored story (a correction, an added paragraph) is caught by embedding
similarity (MiniLM): the mean, over the new article's passages, of each one's best cosine
similarity to an earlier document's passages. The policy then skips it, or learns the
difference: the sentences of the new version that the old one does not contain.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import numpy as np

# Query parameters that track the reader rather than name the article.
TRACKING = {"fbclid", "gclid", "dclid", "msclkid", "mc_cid", "mc_eid", "ref", "ref_src", "igshid"}
DEFAULT_PORTS = {"http": 80, "https": 443}


def digest(*parts: str) -> str:
    """Short stable hash of some strings (entry keys and revisions)."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode("utf-8", "replace") + b"\x00")
    return h.hexdigest()[:24]


def canonical_url(url: str) -> str:
    """One spelling per article: lower-case scheme and host, no default port, no fragment, no
    tracking parameters (utm_*, fbclid, ...), remaining parameters sorted, no trailing slash."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if parts.port and parts.port != DEFAULT_PORTS.get(scheme):
        host = f"{host}:{parts.port}"
    query = sorted(
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if not k.lower().startswith("utm_") and k.lower() not in TRACKING
    )
    path = parts.path.rstrip("/") or "/"
    return urlunsplit((scheme, host, path, urlencode(query), ""))


_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def sentences(text: str) -> list[str]:
    """Sentences, split at end punctuation only: line breaks are not boundaries, because the
    stored passages join a document's lines (a title line merges with the first sentence)."""
    return [s for s in _SENTENCE.split(" ".join(text.split())) if s]


def _norm(sentence: str) -> str:
    return " ".join(sentence.lower().split())


def difference(new_text: str, old_text: str) -> str:
    """The sentences of `new_text` that `old_text` does not contain, in their order."""
    known = {_norm(s) for s in sentences(old_text)}
    return "\n".join(s for s in sentences(new_text) if _norm(s) not in known)


@dataclass(frozen=True)
class NearDuplicate:
    document_id: int
    similarity: float


def story_similarity(new: np.ndarray, old: np.ndarray) -> float:
    """Mean over new passages of the best cosine similarity to an old passage; unit rows,
    new (n, d), old (m, d)."""
    if not len(new) or not len(old):
        return 0.0
    return float((new @ old.T).max(axis=1).mean())


def nearest_story(
    state, namespace: str, passages: list[str], candidates: list[int], threshold: float
) -> NearDuplicate | None:
    """The stored document most similar to these passages, if at or above `threshold`.
    Candidates: the given documents (an earlier revision) plus each passage's nearest hit."""
    store = state.passages
    pool = list(candidates)
    for text in passages:
        for hit in store.query(namespace, text, k=1):
            if hit.similarity >= threshold and hit.document_id not in pool:
                pool.append(hit.document_id)
    if not pool:
        return None
    new = store.embed(passages)
    best: NearDuplicate | None = None
    for document_id in pool:
        old_passages = [p["text"] for p in state.ledger.passages(document_id)]
        similarity = story_similarity(new, store.embed(old_passages))
        if similarity >= threshold and (best is None or similarity > best.similarity):
            best = NearDuplicate(document_id, similarity)
    return best
