"""The ingestion fetcher against a real HTTP server on 127.0.0.1: conditional requests, errors,
timeouts, redirect loops, the size cap, per-host politeness, and the backoff schedule."""

import random
import time

import pytest

from agent.ingest.fetch import backoff_delay
from agent.web import AddressPolicy, Fetcher, FetchError
from evals.news_server import LOCAL_NETWORK, Route

LOCAL = AddressPolicy(allowed_networks=(LOCAL_NETWORK,))  # the news server on 127.0.0.1


@pytest.fixture
def server(serve_news):
    return serve_news(seed=1)


def fetcher(**changes) -> Fetcher:
    settings = {"timeout_s": 2.0, "max_bytes": 100_000, "politeness_s": 0.0, "policy": LOCAL}
    return Fetcher(**{**settings, **changes})


def test_conditional_get_gets_304_until_the_feed_changes(server):
    f = fetcher()
    first = f.get(server.base + "/rss.xml")
    assert first.status == 200 and first.etag and b"<rss" in first.body
    again = f.get(server.base + "/rss.xml", etag=first.etag, last_modified=first.last_modified)
    assert again.not_modified and again.body == b""
    [(_, headers)] = server.requests_to("/rss.xml")[1:]
    assert headers["If-None-Match"] == first.etag and headers["If-Modified-Since"]
    server.world.publish()
    changed = f.get(server.base + "/rss.xml", etag=first.etag)
    assert changed.status == 200 and changed.etag != first.etag


@pytest.mark.parametrize(
    "route, transient, message",
    [
        (Route(404, b"gone"), False, "HTTP 404"),
        (Route(500, b"oops"), True, "HTTP 500"),
        (Route(429, b"slow down"), True, "HTTP 429"),
        (Route(200, b"x" * 200_000), False, "over the limit"),
    ],
)
def test_http_errors_say_what_happened_and_whether_to_retry(server, route, transient, message):
    server.route("/bad", route)
    with pytest.raises(FetchError, match=message) as err:
        fetcher().get(server.base + "/bad")
    assert err.value.transient is transient


def test_redirect_loop_is_refused(server):
    with pytest.raises(FetchError, match="redirects") as err:
        fetcher().get(server.base + "/loop/a")
    assert not err.value.transient


def test_slow_headers_and_trickling_bodies_hit_the_timeout(server):
    server.route("/slow", Route(200, b"late", delay_s=3.0))
    server.route("/trickle", Route(200, b"y" * 6400, trickle_s=0.05))  # 100 chunks: 5 s
    for path in ("/slow", "/trickle"):
        start_at = time.monotonic()
        with pytest.raises(FetchError, match="within 1 s") as err:
            fetcher(timeout_s=1.0).get(server.base + path)
        assert err.value.transient
        assert time.monotonic() - start_at < 2.5  # the whole request is bounded, not each read


def test_unreachable_host_is_a_transient_error():
    with pytest.raises(FetchError, match="unreachable") as err:
        fetcher().get("http://127.0.0.1:9/feed.xml")  # port 9 (discard): nothing listens
    assert err.value.transient


def test_requests_to_one_host_keep_the_politeness_delay(server):
    f = fetcher(politeness_s=0.4)
    for n in (1, 2, 3):
        f.get(f"{server.base}/article/{n}.html")
    times = [t for n in (1, 2, 3) for t, _ in server.requests_to(f"/article/{n}.html")]
    assert all(b - a >= 0.35 for a, b in zip(times, times[1:], strict=False))


def test_backoff_grows_exponentially_with_jitter_up_to_the_cap():
    rng = random.Random(0)
    delays = [backoff_delay(n, 10.0, 100.0, rng) for n in range(1, 8)]
    for n, delay in enumerate(delays, 1):
        ceiling = min(100.0, 10.0 * 2 ** (n - 1))
        assert ceiling / 2 <= delay <= ceiling
    assert max(delays) <= 100.0 and delays[3] > delays[0]
    spread = {round(backoff_delay(3, 10.0, 100.0, rng), 3) for _ in range(20)}
    assert len(spread) > 10  # jittered: failing sources do not retry in lockstep
