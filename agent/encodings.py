"""Which encoding a text is in, decided once, here, for files, web pages and feeds alike.

In this order:
1. a byte-order mark;
2. valid UTF-8: text in a legacy encoding is almost never valid UTF-8 by chance (its non-ASCII
   bytes rarely form UTF-8 sequences), so a valid reading beats a declared charset that is wrong;
3. the declared charset (an HTTP header, the XML declaration, an HTML meta tag), if it decodes;
4. UTF-8 with a few damaged bytes: when most non-ASCII bytes form valid UTF-8 sequences, the
   text is UTF-8 and the bad bytes become U+FFFD (marked, not mojibake; a legacy code page would
   garble every accented letter instead: `Le cafÃ© de la gare`);
5. charset_normalizer's detection (it tells KOI8-R, EUC-KR, windows-1255, TIS-620, Shift_JIS,
   EUC-JP and the like apart by how readable each candidate decoding is). Single-byte Latin code
   pages often decode a short text equally cleanly (windows-1250 reads `à` as `ŕ`); among such
   ties the decoding whose accented letters a language actually uses most is taken, then
   windows-1252, the web's usual legacy default;
6. otherwise the text is refused: a mojibake document is never learned silently.
"""

from __future__ import annotations

import codecs
import re

from agent.core.errors import DocumentError

BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# The start of a document, where an XML declaration or an HTML meta charset must be.
SNIFF_BYTES = 4096
XML_DECLARATION = re.compile(rb"""^\s*<\?xml[^>]*\bencoding\s*=\s*["']([A-Za-z0-9._:-]+)["']""")
META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.I)
# Step 4: a text is damaged UTF-8 when its valid multi-byte sequences outnumber its invalid
# bytes this many times (a legacy text's high bytes almost all fail as UTF-8).
UTF8_MAJORITY = 3
# Step 5: charset_normalizer's "mess" of a decoding (0: clean); above this it is not readable.
MAX_CHAOS = 0.2
TIE_CHAOS = 0.01  # decodings this close in mess are tied
PREFERRED = ("cp1252", "iso8859_1", "iso8859_15")


def declared_charset(raw: bytes) -> str | None:
    """The charset an XML declaration or an HTML meta tag at the start of `raw` names."""
    head = raw[:SNIFF_BYTES]
    found = XML_DECLARATION.search(head) or META_CHARSET.search(head)
    return found.group(1).decode("ascii").lower() if found else None


def _codec(charset: str | None) -> str | None:
    try:
        return codecs.lookup(charset).name if charset else None
    except LookupError:
        return None


def _damaged_utf8(raw: bytes) -> bool:
    """Most non-ASCII bytes form valid UTF-8 sequences: UTF-8 with a few bad bytes."""
    text = raw.decode("utf-8", "replace")
    invalid = text.count("\ufffd") - raw.decode("utf-8", "ignore").count("\ufffd")
    valid = sum(1 for ch in text if ord(ch) > 127 and ch != "\ufffd")
    return valid >= UTF8_MAJORITY * max(invalid, 1)


def _letter_fit(text: str) -> float:
    """How well the accented letters of `text` fit the language whose most used letters they
    most are (charset_normalizer's frequency tables): 1.0 when every one is among them."""
    from charset_normalizer.constant import FREQUENCIES

    letters = [ch for ch in text.lower() if ord(ch) > 127 and ch.isalpha()]
    if not letters:
        return 1.0
    return max(
        sum(ch in set(common) for ch in letters) / len(letters) for common in FREQUENCIES.values()
    )


def _detect(raw: bytes) -> str | None:
    """The best detected decoding of `raw`, or None when no decoding is readable."""
    from charset_normalizer import from_bytes

    matches = [m for m in from_bytes(raw) if m.encoding]
    if not matches:
        return None
    best = min(m.chaos for m in matches)
    if best > MAX_CHAOS:
        return None
    tied = [m for m in matches if m.chaos <= best + TIE_CHAOS]
    readings: dict[str, str] = {}
    for match in tied:
        readings.setdefault(str(match), match.encoding)
    if len(readings) == 1:
        return next(iter(readings))

    def rank(item: tuple[str, str]) -> tuple[float, bool]:
        text, encoding = item
        return _letter_fit(text), encoding in PREFERRED

    return max(readings.items(), key=rank)[0]


def decode(raw: bytes, name: str, declared: str | None = None) -> str:
    """The text of `raw` (see the module's docstring); `declared`: an HTTP header's charset.
    Raises DocumentError naming `name` when no reading is trustworthy."""
    for bom, codec in BOMS:
        if raw.startswith(bom):
            try:
                return raw.decode(codec)
            except UnicodeDecodeError:
                break
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    for codec in filter(None, (_codec(declared), _codec(declared_charset(raw)))):
        if codec != "utf-8":
            try:
                return raw.decode(codec)
            except UnicodeDecodeError:
                continue
    if _damaged_utf8(raw):
        return raw.decode("utf-8", "replace")
    text = _detect(raw)
    if text is None:
        raise DocumentError(
            f"{name}: unknown text encoding (not UTF-8, and no encoding reads it cleanly); "
            "convert it to UTF-8"
        )
    return text
