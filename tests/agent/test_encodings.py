"""Encodings are decided once (agent/encodings.py) for files, pages and feeds: a text in a common
legacy encoding is stored correctly or refused, never as mojibake (issue 17, item 8); feed text
and titles come out without entities or markup (item 9)."""

import random

import pytest

from agent.documents import DocumentError, plain_text, read_file
from agent.encodings import decode
from agent.ingest.sources import parse_feed
from evals.hostile_inputs import LEGACY, encodings, rss


@pytest.mark.parametrize("encoding", sorted(LEGACY))
def test_undeclared_legacy_feeds_are_read_right(encoding):
    text = LEGACY[encoding]
    title = text.split(".")[0].split("。")[0][:30]
    [entry] = parse_feed(rss(title, text).encode(encoding), "feed.xml", "application/rss+xml")
    assert entry.title == title and entry.inline_text == text


@pytest.mark.parametrize("encoding", ["koi8_r", "shift_jis", "cp1255"])
def test_a_declared_encoding_is_honoured(encoding):
    text = LEGACY[encoding]
    declared = rss("t", text, f"<?xml version='1.0' encoding='{encoding}'?>")
    assert parse_feed(declared.encode(encoding), "feed.xml")[0].inline_text == text
    headed = rss("t", text).encode(encoding)
    content_type = f"application/rss+xml; charset={encoding}"
    assert parse_feed(headed, "feed.xml", content_type)[0].inline_text == text


def test_files_in_legacy_encodings_and_damaged_utf8(tmp_path):
    for encoding, text in LEGACY.items():
        path = tmp_path / f"{encoding}.txt"
        path.write_bytes(text.encode(encoding))
        assert read_file(path).text == text
    french = tmp_path / "latin1.txt"
    french.write_bytes("Le café est à Paris, près de la Seine.".encode("latin-1"))
    assert read_file(french).text == "Le café est à Paris, près de la Seine."
    # ~1 KB of UTF-8 with one bad byte: UTF-8 with a marked hole, not a legacy code page
    good = ("Le café de la gare est ouvert. " * 34).encode()
    damaged = tmp_path / "damaged.txt"
    damaged.write_bytes(good[:500] + b"\xff" + good[500:])
    text = read_file(damaged).text
    assert text.count("café") == 34 and "\ufffd" in text and "Ã" not in text


def test_bytes_no_encoding_reads_cleanly_are_refused():
    rng = random.Random(0)
    noise = bytes(rng.randrange(128, 256) for _ in range(2000))
    with pytest.raises(DocumentError, match="unknown text encoding"):
        decode(noise, "noise.txt")


def test_feed_entities_and_escaped_markup_are_cleaned():
    feed = (
        b"<rss version='2.0'><channel><title>x</title>"
        b"<item><title>AT&amp;amp;T buys &amp;lt;script&amp;gt;alert(1)&amp;lt;/script&amp;gt; "
        b"&amp;#8220;news&amp;#8221;</title><link>https://e.org/1</link></item>"
        b"<item><title>&lt;script&gt;x()&lt;/script&gt;Breaking &lt;b&gt;now&lt;/b&gt;</title>"
        b"<link>https://e.org/2</link></item></channel></rss>"
    )
    first, second = parse_feed(feed, "feed.xml")
    assert first.title == "AT&T buys “news”"
    assert second.title == "Breaking now"
    assert plain_text("don&#x2019;t &#8220;quote&#8221; AT&amp;T") == "don’t “quote” AT&T"


def test_no_legacy_text_is_stored_as_mojibake(tmp_path):
    summary = encodings(tmp_path)["summary"]  # the results table's own run (results/hardening)
    assert summary == {"stored correctly": 3 * len(LEGACY), "refused": 0, "mojibake": 0}
