"""Documents from files, folders and URLs as plain text: what `/feed`, `seal learn` and
`seal ingest` read before anything is stored.

Files are read with a size limit and must be regular files (agent/core/io.py); URLs through the
one fetch path (agent/web.py: public addresses only by default, one deadline, a size cap).
Plain text and Markdown are decoded as agent/encodings.py decides; HTML goes through trafilatura
(a maintained main-content extractor: no menus, no scripts); PDF through pypdf. Every failure a
user can cause (missing file, device or pipe, binary or huge file, unknown encoding, an
unreachable, slow or private URL, a page with no text) is one `DocumentError` naming the input
and what to do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

from agent.core.errors import DocumentError
from agent.core.io import read_limited
from agent.encodings import decode
from agent.web import AddressPolicy, Fetcher

MAX_BYTES = 5_000_000
TIMEOUT_S = 20.0
TEXT_SUFFIXES = {".txt", ".text", ".md", ".markdown", ".rst"}
HTML_SUFFIXES = {".html", ".htm", ".xhtml"}
PDF_SUFFIXES = {".pdf"}
READABLE_SUFFIXES = TEXT_SUFFIXES | HTML_SUFFIXES | PDF_SUFFIXES


@dataclass(frozen=True)
class Document:
    title: str
    text: str
    uri: str  # absolute path or URL: where it came from
    kind: str  # text | html | pdf


def is_url(source: str) -> bool:
    return urlsplit(str(source)).scheme in ("http", "https")


def _title_from_name(name: str) -> str:
    stem = Path(urlsplit(name).path).stem or urlsplit(name).netloc or name
    return re.sub(r"[_-]+", " ", stem).strip() or name


def decode_text(raw: bytes, name: str, charset: str | None = None) -> str:
    """Text of `raw`, decoded as agent/encodings.py decides (`charset`: a declared one)."""
    if b"\x00" in raw and not raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DocumentError(f"{name} is a binary file, not text: give a text, HTML or PDF file")
    return decode(raw, name, charset)


class _TextOf(HTMLParser):
    """The text of an HTML fragment: tags dropped, script and style with their content."""

    SKIPPED = {"script", "style", "template", "noscript"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs) -> None:
        self.skipping += tag in self.SKIPPED

    def handle_endtag(self, tag: str) -> None:
        self.skipping -= tag in self.SKIPPED and self.skipping > 0

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data)


def _strip_markup(fragment: str) -> str:
    parser = _TextOf()
    parser.feed(fragment)
    parser.close()
    return "".join(parser.parts)


def plain_text(fragment: str) -> str:
    """One line of text from a feed's title or text field: markup removed (scripts and styles
    with their content), HTML entities decoded (`AT&amp;T`, `don&#x2019;t`), whitespace
    collapsed. Markup escaped once more (`&lt;script&gt;`) is markup too, and removed."""
    text = _strip_markup(fragment)
    if re.search(r"<[A-Za-z/!]", text):  # the markup was escaped: now it is markup
        text = _strip_markup(text)
    return " ".join(text.split())


def _check_text(text: str, name: str) -> str:
    text = text.replace("\x00", "").strip()
    if not text:
        raise DocumentError(f"{name} has no text to learn from (empty, or only markup/images)")
    # Control characters other than whitespace are the mark of a binary file decoded as text.
    controls = sum(1 for ch in text[:20_000] if ord(ch) < 32 and ch not in "\n\r\t\f")
    if controls > 0.01 * min(len(text), 20_000):
        raise DocumentError(f"{name} looks binary, not text: give a text, HTML or PDF file")
    return text


def _html_text(raw: bytes, name: str, charset: str | None) -> tuple[str | None, str]:
    import trafilatura

    html = decode_text(raw, name, charset)
    text = trafilatura.extract(html, include_comments=False, include_tables=True, url=name)
    meta = trafilatura.extract_metadata(html)
    return (meta.title if meta is not None else None), _check_text(text or "", name)


def _pdf_text(raw: bytes, name: str) -> tuple[str | None, str]:
    import io

    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(raw))
        pages = [page.extract_text() or "" for page in reader.pages]
        title = reader.metadata.title if reader.metadata else None
    except (PdfReadError, ValueError, KeyError, TypeError) as exc:
        raise DocumentError(f"{name} is not a readable PDF ({exc}); export it again") from None
    return title, _check_text("\n\n".join(pages), f"{name} (PDF: no extractable text)")


def kind_of(raw: bytes, name: str, content_type: str | None = None) -> str:
    suffix = Path(urlsplit(name).path).suffix.lower()
    ctype = (content_type or "").split(";")[0].strip().lower()
    if raw.startswith(b"%PDF") or suffix in PDF_SUFFIXES or ctype == "application/pdf":
        return "pdf"
    head = raw[:512].lstrip().lower()
    if (
        suffix in HTML_SUFFIXES
        or ctype in ("text/html", "application/xhtml+xml")
        or head.startswith((b"<!doctype html", b"<html"))
    ):
        return "html"
    return "text"


def document_from_bytes(
    raw: bytes, name: str, content_type: str | None = None, charset: str | None = None
) -> Document:
    """Extract the text of one document's bytes; `name` (path or URL) appears in errors."""
    if len(raw) > MAX_BYTES:
        raise DocumentError(f"{name} is {len(raw):,} bytes, over the limit of {MAX_BYTES:,}")
    kind = kind_of(raw, name, content_type)
    if kind == "pdf":
        title, text = _pdf_text(raw, name)
    elif kind == "html":
        title, text = _html_text(raw, name, charset)
    else:
        title, text = None, _check_text(decode_text(raw, name, charset), name)
    return Document(title or _title_from_name(name), text, name, kind)


def read_file(path: Path, max_bytes: int = MAX_BYTES) -> Document:
    path = Path(path).expanduser()
    raw = read_limited(path, max_bytes, "file", DocumentError)
    return document_from_bytes(raw, str(path.resolve()))


def read_url(
    url: str,
    max_bytes: int = MAX_BYTES,
    timeout_s: float = TIMEOUT_S,
    policy: AddressPolicy | None = None,
) -> Document:
    """The document at `url`, fetched through the one fetch path (agent/web.py): public
    addresses only unless `policy` allows others, one deadline for the whole request."""
    with Fetcher(timeout_s=timeout_s, max_bytes=max_bytes, policy=policy) as fetcher:
        response = fetcher.get(url)
    doc = document_from_bytes(response.body, response.url, response.content_type, response.charset)
    return Document(doc.title, doc.text, url, doc.kind)


def folder_files(folder: Path) -> list[Path]:
    """Readable files under `folder` (text, Markdown, HTML, PDF), in name order; hidden ones
    skipped."""
    return sorted(
        p
        for p in Path(folder).rglob("*")
        if p.is_file()
        and p.suffix.lower() in READABLE_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def read_source(
    source: str | Path, policy: AddressPolicy | None = None
) -> tuple[list[Document], list[DocumentError]]:
    """The documents of a file, a URL, or every readable file of a folder, and the errors of the
    folder's files that could not be read (a file or URL that fails raises instead). `policy`:
    the non-public addresses a URL may reach (network.*; default: none)."""
    if isinstance(source, str) and is_url(source):
        return [read_url(source, policy=policy)], []
    path = Path(source).expanduser()
    if not path.exists():
        raise DocumentError(f"{path} does not exist (give a file, a folder or an http(s) URL)")
    if not path.is_dir():
        return [read_file(path)], []
    files = folder_files(path)
    if not files:
        raise DocumentError(
            f"{path} holds no readable files ({', '.join(sorted(READABLE_SUFFIXES))})"
        )
    documents, errors = [], []
    for file in files:
        try:
            documents.append(read_file(file))
        except DocumentError as exc:
            errors.append(exc)
    return documents, errors
