"""What sources yield (RSS, Atom, JSON Feed, folders, URL lists), including malformed and
mis-encoded feeds, duplicate GUIDs; and the deduplication rules (canonical URLs, differences)."""

import os

import pytest

from agent.core.config import IngestConfig
from agent.documents import DocumentError
from agent.ingest import schedule
from agent.ingest.dedup import canonical_url, difference, story_similarity
from agent.ingest.sources import (
    folder_entries,
    parse_feed,
    parse_json_feed,
    source_of,
    url_list_entries,
)
from evals.news_server import NewsWorld

BASE = "http://127.0.0.1:8000"


@pytest.fixture
def world():
    world = NewsWorld(seed=2)
    world.publish(4)
    return world


def test_rss_atom_and_json_feed_name_the_same_stories(world):
    rss = parse_feed(world.rss(BASE), "rss", "application/rss+xml")
    atom = parse_feed(world.atom(BASE), "atom", "application/atom+xml")
    jsonf = parse_feed(world.json_feed(BASE), "json", "application/feed+json")
    keys = [f"{BASE}/article/{n}.html" for n in (4, 3, 2, 1)]
    for entries in (rss, atom, jsonf):
        assert [e.key for e in entries] == keys  # the RSS links' utm_source is dropped
        assert all(e.published_at and e.title for e in entries)
    assert jsonf[0].inline_text == world.stories[3].text


def test_an_edited_story_is_a_new_revision_of_the_same_key(world):
    before = {e.key: e.revision for e in parse_feed(world.rss(BASE), "rss")}
    world.edit(2)
    after = {e.key: e.revision for e in parse_feed(world.rss(BASE), "rss")}
    changed = [k for k in after if after[k] != before[k]]
    assert changed == [f"{BASE}/article/2.html"]


def test_malformed_xml_keeps_what_can_be_read_and_garbage_is_an_error(world):
    truncated = world.rss(BASE)[:-120]  # cut inside the last item, closing tags missing
    entries = parse_feed(truncated, "truncated")
    assert len(entries) >= 3
    for garbage in (b"<<<this is not xml", b"", b"\x00\x01\x02binary"):
        with pytest.raises(DocumentError, match="not a readable feed|binary file"):
            parse_feed(garbage, "garbage.xml")
    with pytest.raises(DocumentError, match="not valid JSON"):
        parse_feed(b"{broken", "feed.json", "application/json")
    with pytest.raises(DocumentError, match="not a JSON Feed"):
        parse_json_feed(b'{"version": 1}', "feed.json")


def test_wrong_and_missing_encodings_still_give_the_titles():
    title = "Caf\u00e9 na\u00efve in Z\u00fcrich"
    rss = (
        "<?xml version='1.0' encoding='{decl}'?><rss version='2.0'><channel><title>x</title>"
        f"<item><title>{title}</title><link>{BASE}/a</link></item></channel></rss>"
    )
    # declared latin-1 and sent as latin-1 without a charset header
    latin = parse_feed(rss.format(decl="iso-8859-1").encode("latin-1"), "latin", "text/xml")
    assert latin[0].title == title
    # declared UTF-8 but sent as latin-1 (a lying server): still entries, nothing raised
    lying = parse_feed(rss.format(decl="utf-8").encode("latin-1"), "lying", "text/xml")
    assert len(lying) == 1 and lying[0].title.startswith("Caf")
    # no declaration at all, UTF-8 bytes, a header claiming us-ascii
    bare = rss.replace("<?xml version='1.0' encoding='{decl}'?>", "").encode("utf-8")
    assert parse_feed(bare, "bare", "text/xml; charset=us-ascii")[0].title == title
    # the lying server's feed is read right too: its bytes are valid latin-1, not UTF-8
    assert lying[0].title == title


def test_duplicate_guids_without_links_become_revisions_not_collisions():
    rss = (
        b"<rss version='2.0'><channel><title>x</title>"
        b"<item><guid>same</guid><description>First story about the bridge.</description></item>"
        b"<item><guid>same</guid><description>Second story about the tower.</description></item>"
        b"<item><guid>same</guid><description>First story about the bridge.</description></item>"
        b"</channel></rss>"
    )
    entries = parse_feed(rss, "dup")
    assert {e.key for e in entries} == {"guid:same"}
    assert len({e.revision for e in entries}) == 2  # the exact repeat is the same revision


def test_canonical_urls():
    assert canonical_url("HTTP://Example.COM:80/a/b/?utm_source=x&b=2&a=1#top") == (
        "http://example.com/a/b?a=1&b=2"
    )
    assert canonical_url("https://example.com:8443/x?fbclid=1") == "https://example.com:8443/x"
    assert canonical_url("https://example.com") == "https://example.com/"


def test_difference_keeps_only_new_and_changed_sentences():
    old = "The bridge opened. About 20 people came. It is long."
    new = "The bridge opened. About 25 people came. It is long. The mayor spoke."
    assert difference(new, old) == "About 25 people came.\nThe mayor spoke."
    assert difference(old, old) == ""


def test_story_similarity_is_the_mean_best_match():
    import numpy as np

    a = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert story_similarity(a, a) == pytest.approx(1.0)
    assert story_similarity(a, a[:1]) == pytest.approx(0.5)
    assert story_similarity(a[:0], a) == 0.0


def test_folder_and_url_list_sources(tmp_path):
    folder = tmp_path / "inbox"
    folder.mkdir()
    (folder / "a.txt").write_text("first text")
    (folder / ".hidden.txt").write_text("skipped")
    [entry] = folder_entries(folder)
    (folder / "a.txt").write_text("first text, edited")
    os.utime(folder / "a.txt", ns=(1, 2))
    [edited] = folder_entries(folder)
    assert edited.key == entry.key and edited.revision != entry.revision
    urls = tmp_path / "urls.txt"
    urls.write_text(f"# reading list\n{BASE}/a?utm_medium=x\n\nnot a url\n{BASE}/b\n")
    assert [e.key for e in url_list_entries(urls)] == [f"{BASE}/a", f"{BASE}/b"]
    assert source_of(str(folder)).kind == "folder"
    assert source_of(str(urls)).kind == "urls"
    assert source_of(BASE + "/rss.xml").kind == "feed"
    with pytest.raises(DocumentError, match="neither"):
        source_of(str(tmp_path / "missing"))


def test_schedule_batches_newest_first_within_budget_and_queue_bound():
    cfg = IngestConfig(batch_size=3, batch_wait_s=60, max_queue=4, update_minutes_per_hour=6)
    queue = [{"id": i, "updated_at": 1000.0 - i} for i in range(6)]  # newest first
    assert schedule.next_batch(queue, cfg) == queue[:3]
    assert [i["id"] for i in schedule.overflow(queue, cfg)] == [4, 5]
    assert schedule.should_learn(queue, 1000.0, cfg, draining=False)
    assert not schedule.should_learn(queue[:2], 1000.0, cfg, draining=False)
    assert schedule.should_learn(queue[:2], 1100.0, cfg, draining=False)  # waited long enough
    assert schedule.should_learn(queue[:1], 1000.0, cfg, draining=True)
    assert not schedule.should_learn([], 1000.0, cfg, draining=True)
    assert schedule.budget_left_s(300.0, cfg) == 60.0
