"""Documents from files, folders and URLs as plain text: what `/feed`, `seal learn` and
`seal ingest` read before anything is stored.

Plain text and Markdown are decoded (BOM, UTF-8, else a detected encoding); HTML goes through
trafilatura (a maintained main-content extractor: no menus, no scripts); PDF through pypdf. Every
failure a user can cause (missing file, binary or huge file, unknown encoding, an unreachable or
slow URL, a page with no text) is one `DocumentError` naming the input and what to do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from agent.core.errors import SealError

MAX_BYTES = 5_000_000
TIMEOUT_S = 20.0
MAX_REDIRECTS = 5
TEXT_SUFFIXES = {".txt", ".text", ".md", ".markdown", ".rst"}
HTML_SUFFIXES = {".html", ".htm", ".xhtml"}
PDF_SUFFIXES = {".pdf"}
READABLE_SUFFIXES = TEXT_SUFFIXES | HTML_SUFFIXES | PDF_SUFFIXES
USER_AGENT = "seal-agent/0.1 (+https://arxiv.org/abs/2506.10943)"


class DocumentError(SealError):
    """A document that cannot be read; the message names it and says what to do."""


@dataclass(frozen=True)
class Document:
    title: str
    text: str
    uri: str  # absolute path or URL: where it came from
    kind: str  # text | html | pdf


def is_url(source: str) -> bool:
    return urlsplit(source).scheme in ("http", "https")


def _title_from_name(name: str) -> str:
    stem = Path(urlsplit(name).path).stem or urlsplit(name).netloc or name
    return re.sub(r"[_-]+", " ", stem).strip() or name


def decode_text(raw: bytes, name: str, charset: str | None = None) -> str:
    """Text of `raw`: the declared charset, a BOM, UTF-8, else a detected encoding."""
    if b"\x00" in raw and not raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DocumentError(f"{name} is a binary file, not text: give a text, HTML or PDF file")
    for encoding in filter(None, [charset, "utf-8-sig"]):
        try:
            return raw.decode(encoding)
        except (UnicodeDecodeError, LookupError):
            continue
    from charset_normalizer import from_bytes

    best = from_bytes(raw).best()
    if best is None or best.encoding is None:
        raise DocumentError(
            f"{name}: unknown text encoding (not UTF-8 and none detected); convert it to UTF-8"
        )
    return str(best)


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
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise DocumentError(f"{path} is {size:,} bytes, over the limit of {max_bytes:,}")
        raw = path.read_bytes()
    except OSError as exc:
        raise DocumentError(f"cannot read {path}: {exc.strerror}") from None
    return document_from_bytes(raw, str(path.resolve()))


def fetch_url(
    url: str, *, max_bytes: int = MAX_BYTES, timeout_s: float = TIMEOUT_S
) -> tuple[bytes, str | None, str | None, str]:
    """GET `url`: (body, content type, charset, final URL). Redirects are followed up to
    MAX_REDIRECTS; the body is streamed and abandoned past `max_bytes`."""
    import httpx

    try:
        with (
            httpx.Client(
                follow_redirects=True,
                max_redirects=MAX_REDIRECTS,
                timeout=timeout_s,
                headers={"User-Agent": USER_AGENT},
            ) as client,
            client.stream("GET", url) as response,
        ):
            if response.status_code >= 400:
                raise DocumentError(f"{url}: the server answered HTTP {response.status_code}")
            chunks, size = [], 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise DocumentError(f"{url} is over the limit of {max_bytes:,} bytes")
                chunks.append(chunk)
            return (
                b"".join(chunks),
                response.headers.get("content-type"),
                response.charset_encoding,
                str(response.url),
            )
    except httpx.TooManyRedirects:
        raise DocumentError(f"{url}: more than {MAX_REDIRECTS} redirects (a loop?)") from None
    except httpx.TimeoutException:
        raise DocumentError(f"{url}: no answer within {timeout_s:g} s; try again later") from None
    except httpx.HTTPError as exc:
        raise DocumentError(f"{url} is unreachable ({exc}); check the address") from None


def read_url(url: str, max_bytes: int = MAX_BYTES, timeout_s: float = TIMEOUT_S) -> Document:
    raw, content_type, charset, final = fetch_url(url, max_bytes=max_bytes, timeout_s=timeout_s)
    doc = document_from_bytes(raw, final, content_type, charset)
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


def read_source(source: str | Path) -> tuple[list[Document], list[DocumentError]]:
    """The documents of a file, a URL, or every readable file of a folder, and the errors of the
    folder's files that could not be read (a file or URL that fails raises instead)."""
    if isinstance(source, str) and is_url(source):
        return [read_url(source)], []
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
