"""Sources and what they yield: entries of RSS / Atom (feedparser) and JSON Feed documents, the
files of a watched folder, and the lines of a list of article URLs.

A feed's encoding is decided before feedparser reads it, by the same rules as every other text
(agent/encodings.py): feedparser falls back to windows-1252 for a feed that does not declare its
encoding, and stores KOI8-R or Shift_JIS news as mojibake. Titles are cleaned of markup and
entities (they prefix every training sequence of their document).

An entry is identified by its `key` (canonical URL, else GUID, else a hash of the entry) and a
`revision`: a story republished with edits gets a new revision, the same entry seen again (or
twice in one feed) does not.
"""

from __future__ import annotations

import calendar
import contextlib
import json
import re
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path

from agent.core.io import read_limited
from agent.documents import DocumentError, decode_text, folder_files, is_url, plain_text
from agent.ingest.dedup import canonical_url, digest

KINDS = ("feed", "folder", "urls")
MAX_TITLE_CHARS = 300
MAX_URL_LIST_BYTES = 5_000_000
XML_ENCODING = re.compile(r"""^(\s*<\?xml[^>]*\bencoding\s*=\s*)(["'])[^"']*\2""")


@dataclass(frozen=True)
class Source:
    kind: str  # feed | folder | urls
    location: str  # URL of the feed, or an absolute path


@dataclass(frozen=True)
class Entry:
    key: str
    revision: str
    url: str | None  # the article to fetch, if any
    guid: str | None
    title: str | None
    inline_text: str | None  # the feed's own HTML or text of the entry
    published_at: float | None  # unix time

    def row(self, source_id: int) -> dict:
        return {"source_id": source_id, **self.__dict__}


def source_of(spec: str) -> Source:
    """A feed URL, a folder to watch, or a text file listing article URLs (one per line)."""
    if is_url(spec):
        return Source("feed", spec)
    path = Path(spec).expanduser()
    if path.is_dir():
        return Source("folder", str(path.resolve()))
    if path.is_file():
        return Source("urls", str(path.resolve()))
    raise DocumentError(
        f"{spec} is neither an http(s) feed URL, a folder, nor a file listing article URLs"
    )


def _when(parsed) -> float | None:
    return float(calendar.timegm(parsed)) if parsed else None


def _entry(
    guid: str | None,
    link: str | None,
    title: str | None,
    text: str | None,
    updated: str | None,
    published_at: float | None,
) -> Entry:
    url = canonical_url(link) if link and is_url(link) else None
    key = url or (f"guid:{guid}" if guid else f"entry:{digest(title or '', text or '')}")
    revision = digest(updated or "", title or "", text or "")
    # A title prefixes every training sequence of its document: no markup, no entities.
    clean = (plain_text(title)[:MAX_TITLE_CHARS] or None) if title else None
    return Entry(key, revision, link if url else None, guid, clean, text, published_at)


def parse_json_feed(raw: bytes, name: str) -> list[Entry]:
    """JSON Feed 1.0 / 1.1 (https://jsonfeed.org/version/1.1)."""
    try:
        feed = json.loads(decode_text(raw, name))
    except ValueError as exc:
        raise DocumentError(f"{name} is not valid JSON ({exc})") from None
    if not isinstance(feed, dict) or not isinstance(feed.get("items"), list):
        raise DocumentError(f"{name} is JSON but not a JSON Feed (no 'items' list)")
    entries = []
    for item in feed["items"]:
        if not isinstance(item, dict):
            continue
        published = None
        for field in ("date_modified", "date_published"):
            with contextlib.suppress(ValueError):
                published = published or time.mktime(
                    time.strptime(str(item.get(field))[:19], "%Y-%m-%dT%H:%M:%S")
                )
        guid = str(item["id"]) if item.get("id") is not None else None
        text = item.get("content_html") or item.get("content_text") or item.get("summary")
        entries.append(
            _entry(
                guid,
                item.get("url") or item.get("external_url"),
                item.get("title"),
                str(text) if text else None,
                str(item.get("date_modified") or ""),
                published,
            )
        )
    return entries


def parse_feed(raw: bytes, name: str, content_type: str | None = None) -> list[Entry]:
    """Entries of an RSS, Atom or JSON feed; a document that is none of these is an error.

    feedparser recovers what it can from malformed XML and wrong encodings (`bozo`); only a feed
    from which nothing at all can be read is refused."""
    import feedparser

    ctype = (content_type or "").lower()
    if "json" in ctype or raw.lstrip()[:1] == b"{":
        return parse_json_feed(raw, name)
    raw, headers = _as_utf8(raw, name, content_type)
    parsed = feedparser.parse(raw, response_headers=headers)
    if not parsed.entries and (parsed.bozo or not parsed.get("version")):
        problem = parsed.get("bozo_exception") or "no RSS, Atom or JSON Feed found"
        raise DocumentError(f"{name} is not a readable feed ({problem})")
    entries = []
    for e in parsed.entries:
        content = e.get("content") or []
        text = (content[0].get("value") if content else None) or e.get("summary")
        entries.append(
            _entry(
                e.get("id"),
                e.get("link"),
                e.get("title"),
                text,
                e.get("updated") or e.get("published"),
                _when(e.get("updated_parsed") or e.get("published_parsed")),
            )
        )
    return entries


def _as_utf8(raw: bytes, name: str, content_type: str | None) -> tuple[bytes, dict[str, str]]:
    """The feed re-encoded as UTF-8, with an XML declaration and a header that say so, so that
    feedparser reads it as agent/encodings.py decoded it."""
    media, _, params = (content_type or "application/xml").partition(";")
    declared = re.search(r"charset\s*=\s*[\"']?([\w.:-]+)", params, re.I)
    text = decode_text(raw, name, declared.group(1) if declared else None)
    text = XML_ENCODING.sub(r"\1\2utf-8\2", text, count=1)
    return text.encode("utf-8"), {"content-type": f"{media.strip()}; charset=utf-8"}


def folder_entries(folder: Path) -> list[Entry]:
    """Readable files of the folder; a file written again (size or mtime) is a new revision."""
    entries = []
    for path in folder_files(folder):
        try:
            stat = path.stat()
        except OSError:  # removed between listing and stat
            continue
        entries.append(
            Entry(
                key=path.resolve().as_uri(),
                revision=f"{stat.st_size}-{stat.st_mtime_ns}",
                url=None,
                guid=None,
                title=None,
                inline_text=None,
                published_at=stat.st_mtime,
            )
        )
    return entries


def url_list_entries(path: Path) -> list[Entry]:
    """http(s) URLs of a text file, one per line; blank lines and '#' comments are skipped."""
    raw = read_limited(Path(path), MAX_URL_LIST_BYTES, "URL list", DocumentError)
    lines = decode_text(raw, str(path)).splitlines()
    entries = []
    for line in lines:
        line = line.strip()
        if line and not line.startswith("#") and is_url(line):
            entries.append(_entry(None, line, None, None, None, None))
    return entries


def http_date(value: str | None) -> float | None:
    """Unix time of an HTTP date header, or None."""
    try:
        return parsedate_to_datetime(value).timestamp() if value else None
    except (TypeError, ValueError):
        return None
