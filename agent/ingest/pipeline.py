"""One item's way through the ledger: seen -> stored -> self_edited -> learned, or rejected with
the reason. Every step is a short ledger write; none holds a transaction open while it fetches,
embeds or trains, so readers (`seal status`, a chat) are never blocked.
"""

from __future__ import annotations

import html
import random
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

from agent.core.config import SealConfig
from agent.core.errors import SealError
from agent.documents import Document, DocumentError, document_from_bytes, plain_text, read_file
from agent.ingest import schedule
from agent.ingest.dedup import difference, nearest_story
from agent.ingest.fetch import backoff_delay
from agent.ingest.sources import MAX_TITLE_CHARS, folder_entries, parse_feed, url_list_entries
from agent.web import Fetcher, FetchError
from stores.state import State, split_passages

Emit = Callable[..., None]  # emit(event, **fields)


class Pipeline:
    """Polls sources, stores items and learns batches of them, on one writable state."""

    def __init__(
        self,
        state: State,
        cfg: SealConfig,
        fetcher: Fetcher,
        emit: Emit,
        *,
        interruptible: Callable[[], AbstractContextManager] = nullcontext,
        clock: Callable[[], float] = time.time,
        seed: int = 0,
    ):
        self.state, self.cfg, self.fetcher, self.emit = state, cfg, fetcher, emit
        self.ingest = cfg.ingest
        self.interruptible = interruptible  # wraps the steps a signal may abandon
        self.clock = clock
        self.rng = random.Random(seed)
        self.runtime = None  # the model, loaded for the first batch

    # polling

    def poll(self, source: dict) -> int:
        """Read one source; record its new entries as items. Returns how many were new."""
        ledger, now = self.state.ledger, self.clock()
        try:
            if source["kind"] == "feed":
                with self.interruptible():
                    response = self.fetcher.get(
                        source["location"],
                        etag=source["etag"],
                        last_modified=source["last_modified"],
                    )
                if response.not_modified:
                    entries = []
                else:
                    entries = parse_feed(response.body, response.url, response.content_type)
                caching = {"etag": response.etag, "last_modified": response.last_modified}
            elif source["kind"] == "folder":
                if not Path(source["location"]).is_dir():
                    raise DocumentError(f"folder {source['location']} does not exist")
                entries, caching = folder_entries(Path(source["location"])), {}
            else:
                entries, caching = url_list_entries(Path(source["location"])), {}
        except DocumentError as exc:
            failures = source["failures"] + 1
            delay = backoff_delay(
                failures, self.ingest.backoff_base_s, self.ingest.backoff_max_s, self.rng
            )
            ledger.ingest_update_source(
                source["id"],
                failures=failures,
                last_error=str(exc),
                last_error_at=now,
                last_polled_at=now,
                next_poll_at=now + delay,
            )
            self.emit("source_error", source=source["location"], error=str(exc), retry_s=delay)
            return 0
        new = ledger.ingest_add_items([e.row(source["id"]) for e in entries])
        interval = source["interval_s"] or self.ingest.poll_interval_s
        ledger.ingest_update_source(
            source["id"],
            failures=0,
            last_polled_at=now,
            last_ok_at=now,
            next_poll_at=now + interval,
            **caching,
        )
        self.emit("polled", source=source["location"], entries=len(entries), new=len(new))
        return len(new)

    # storing

    def _read(self, item: dict) -> Document:
        """The item's text: the linked article, the file, or the feed's own text."""
        if item["key"].startswith("file:"):
            return read_file(Path(url2pathname(urlsplit(item["key"]).path)), self.ingest.max_bytes)
        inline = item["inline_text"]
        if item["url"] and (self.ingest.fetch_articles or not inline):
            try:
                with self.interruptible():
                    r = self.fetcher.get(item["url"])
                return document_from_bytes(r.body, r.url, r.content_type, r.charset)
            except FetchError as exc:
                if exc.transient or not inline:
                    raise
            except DocumentError:
                if not inline:
                    raise
        if not inline:
            raise DocumentError(f"item {item['id']} has neither a link nor text")
        name = item["url"] or item["key"]
        # A feed's text field is HTML: entities without tags (`AT&amp;T`) are decoded, and
        # markup escaped once more (`&lt;p&gt;`) goes to the extractor like markup.
        text = inline if "<" in inline else html.unescape(inline)
        if "<" in text:  # feed HTML is a fragment: give the extractor a page around it
            raw = f"<html><body><article>{text}</article></body></html>".encode()
            return document_from_bytes(raw, name, "text/html", "utf-8")
        return document_from_bytes(text.encode(), name, "text/plain", "utf-8")

    def _reject(self, item: dict, reason: str, **fields) -> str:
        self.state.ledger.ingest_set_item(
            item["id"], state="rejected", reason=reason, inline_text=None, **fields
        )
        self.emit("rejected", item=item["id"], reason=reason)
        return "rejected"

    def store(self, item: dict) -> str:
        """Fetch, extract, deduplicate and store one seen item: 'stored', 'rejected' or 'retry'."""
        from stores.passages import content_hash  # deferred: chromadb

        ledger, ingest = self.state.ledger, self.ingest
        try:
            doc = self._read(item)
        except DocumentError as exc:
            attempts = item["attempts"] + 1
            if isinstance(exc, FetchError) and exc.transient and attempts < ingest.max_attempts:
                delay = backoff_delay(
                    attempts, ingest.backoff_base_s, ingest.backoff_max_s, self.rng
                )
                ledger.ingest_set_item(
                    item["id"], attempts=attempts, next_try_at=self.clock() + delay, reason=str(exc)
                )
                self.emit("retry", item=item["id"], error=str(exc), retry_s=delay)
                return "retry"
            return self._reject(item, str(exc), attempts=attempts)
        title = plain_text(item["title"] or doc.title)[:MAX_TITLE_CHARS] or doc.title
        text = doc.text
        if len(text.split()) < ingest.min_words:
            return self._reject(item, f"too short ({len(text.split())} words)")
        digest = content_hash(text)
        same = ledger.ingest_item_with(content_hash=digest, exclude=item["id"])
        if same is not None:
            return self._reject(
                item, f"duplicate of item {same['id']} (same text)", content_hash=digest
            )
        previous = ledger.ingest_item(item["supersedes"]) if item["supersedes"] else None
        candidates = [previous["document_id"]] if previous and previous["document_id"] else []
        passages = split_passages(text, self.cfg.store.passage_words)
        near = nearest_story(
            self.state,
            self.cfg.store.namespace,
            passages,
            candidates,
            ingest.near_duplicate_similarity,
        )
        if near is not None:
            about = f"document {near.document_id} (similarity {near.similarity:.3f})"
            if ingest.near_duplicate_policy == "skip":
                return self._reject(item, f"near duplicate of {about}", content_hash=digest)
            old = "\n\n".join(p["text"] for p in ledger.passages(near.document_id))
            text = difference(text, old)
            if not text.strip():
                return self._reject(
                    item, f"no new sentences: an unchanged version of {about}", content_hash=digest
                )
            title = f"{title} (changes since document {near.document_id})"
        # The document and the item's link to it commit together: a crash in between leaves
        # neither (the vectors of a rolled-back document are removed by the next writer's
        # reconcile_vectors), so a retried item never meets its own half-stored document.
        with ledger.transaction():
            stored = self.state.add_document(
                text,
                source="ingest",
                namespace=self.cfg.store.namespace,
                passage_words=self.cfg.store.passage_words,
                uri=item["url"] or item["key"],
                title=title,
                fetched_at=self.clock(),
            )
            document_id = stored.document_id
            if stored.duplicate_of is not None:
                owner = ledger.ingest_item_of_document(stored.duplicate_of)
                if owner is not None:
                    return self._reject(
                        item,
                        f"duplicate of item {owner['id']} (document {stored.duplicate_of})",
                        content_hash=digest,
                    )
                document_id = stored.duplicate_of  # stored outside ingestion (`seal learn`)
            ledger.ingest_set_item(
                item["id"],
                state="stored",
                document_id=document_id,
                content_hash=digest,
                title=title,
                inline_text=None,
                reason=f"changes since document {near.document_id}" if near else None,
            )
        self.emit("stored", item=item["id"], document=document_id, title=title)
        return "stored"

    # the queue and learning

    def bound_queue(self) -> int:
        """Reject the oldest queued items beyond `max_queue`; returns how many."""
        dropped = schedule.overflow(self.state.ledger.ingest_queue(), self.ingest)
        reason = f"queue full: more than {self.ingest.max_queue} waiting, newest kept"
        for item in dropped:
            with self.state.ledger.transaction():
                self.state.ledger.set_document_status(item["document_id"], "rejected", reason)
                self._reject(item, reason)
        return len(dropped)

    def learn(self, batch: list[dict]) -> str:
        """One update from the batch's documents; item states follow their documents."""
        # Deferred: these load torch; `seal ingest --status` and storing never need it.
        from agent.learn import learn_documents
        from agent.state_model import load_runtime

        ledger = self.state.ledger
        ready = []
        for item in batch:
            if item["attempts"] >= self.ingest.max_attempts:
                reason = f"learning did not finish in {item['attempts']} attempts"
                with ledger.transaction():
                    ledger.set_document_status(item["document_id"], "rejected", reason)
                    self._reject(item, reason)
            else:
                ledger.ingest_set_item(item["id"], attempts=item["attempts"] + 1)
                ready.append(item)
        if not ready:
            return "none"
        documents = [item["document_id"] for item in ready]
        started = self.clock()
        try:
            with self.interruptible():
                if self.runtime is None:
                    self.emit("loading_model", model=self.cfg.model.name)
                    self.runtime = load_runtime(self.state, self.cfg)
                self.emit("learning", items=[i["id"] for i in ready], documents=documents)
                result = learn_documents(
                    self.state,
                    self.runtime,
                    self.cfg,
                    documents,
                    progress=lambda line: self.emit("progress", message=line.strip()),
                )
        except SealError as exc:  # e.g. no trainable text: these documents cannot be learned
            with ledger.transaction():
                for item in ready:
                    ledger.set_document_status(item["document_id"], "rejected", str(exc))
            ledger.ingest_sync_items()
            self.emit("learn_failed", documents=documents, error=str(exc))
            return "failed"
        except Exception as exc:  # noqa: BLE001 - a days-long run outlives one failed update
            # The items stay queued with one more attempt counted (max_attempts ends it); the
            # next update reloads the current adapter over whatever this one left behind.
            self.emit("learn_error", documents=documents, error=f"{type(exc).__name__}: {exc}")
            return "error"
        seconds = self.clock() - started
        ledger.ingest_record_batch(
            started_at=started,
            seconds=seconds,
            n_documents=len(documents),
            update_id=result.update_id,
            decision=result.decision,
        )
        ledger.ingest_sync_items()
        self.emit(
            "learned" if result.decision == "accept" else "update_rolled_back",
            documents=documents,
            version=result.version,
            reason=result.reason,
            seconds=round(seconds, 1),
        )
        return result.decision
