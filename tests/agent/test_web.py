"""The one fetch path (agent/web.py) against real HTTP servers on loopback addresses: no request
reaches a loopback, private, link-local or metadata address unless the policy allows it, checked
after DNS resolution and on every redirect (issue 17, item 7); one deadline bounds the whole
request, headers included (item 6)."""

import re
import time

import pytest

from agent.documents import read_url
from agent.web import AddressPolicy, AddressRefused, Fetcher, FetchError
from evals.news_server import LOCAL_NETWORK, NewsWorld, Route, start

LOCAL = AddressPolicy(allowed_networks=(LOCAL_NETWORK,))  # 127.0.0.1 only


@pytest.fixture
def servers():
    """A news server on 127.0.0.1 and a second one on 127.0.0.2 (another loopback address)."""
    world = NewsWorld(seed=5)
    world.publish(2)
    first, second = start(world), start(world, host="127.0.0.2")
    yield first, second
    first.shutdown()
    second.shutdown()


def get(url, policy=None, timeout_s=2.0):
    with Fetcher(timeout_s=timeout_s, max_bytes=100_000, policy=policy) as fetcher:
        return fetcher.get(url)


@pytest.mark.parametrize(
    "url, kind",
    [
        ("http://169.254.169.254/latest/meta-data/", "link-local (cloud metadata)"),
        ("http://[::ffff:169.254.169.254]/latest/", "link-local (cloud metadata)"),
        ("http://10.0.0.1/", "private"),
        ("http://192.168.1.1:8080/admin", "private"),
        ("http://[::1]/", "loopback"),
        ("http://0.0.0.0:80/", "unspecified"),
        ("http://100.64.0.1/", "non-public"),  # carrier-grade NAT: neither private nor global
    ],
)
def test_non_public_addresses_are_refused_before_connecting(url, kind):
    with pytest.raises(
        AddressRefused, match=re.escape(f"{url} refused: ") + ".*" + re.escape(f"({kind})")
    ) as e:
        get(url, timeout_s=30.0)  # refused at once: no connection is attempted
    assert not e.value.transient


def test_loopback_is_refused_by_default_by_address_and_by_name(servers):
    first, _ = servers
    port = first.server_address[1]
    for url in (f"{first.base}/rss.xml", f"http://localhost:{port}/rss.xml"):
        with pytest.raises(AddressRefused, match="loopback"):
            get(url)
        with pytest.raises(AddressRefused, match="loopback"):
            read_url(url)  # chat /feed's path: the same Fetcher
    assert first.requests == []  # not one request reached the server


def test_every_redirect_hop_is_checked(servers):
    first, second = servers
    first.route("/to-metadata", Route(302, b"", {"Location": "http://169.254.169.254/latest/"}))
    first.route("/to-second", Route(302, b"", {"Location": f"{second.base}/rss.xml"}))
    first.route("/to-mapped", Route(302, b"", {"Location": "http://[::ffff:10.0.0.1]/"}))
    for path in ("/to-metadata", "/to-second", "/to-mapped"):
        with pytest.raises(AddressRefused, match="not a public address"):
            get(first.base + path, LOCAL)  # the first hop is allowed, the redirect is not
    assert len(first.requests) == 3 and second.requests == []


def test_the_config_switch_allows_private_addresses(servers):
    first, second = servers
    assert get(f"{first.base}/rss.xml", LOCAL).status == 200
    with pytest.raises(AddressRefused):
        get(f"{second.base}/rss.xml", LOCAL)  # 127.0.0.2 is not in 127.0.0.1/32
    assert get(f"{second.base}/rss.xml", AddressPolicy(allow_private=True)).status == 200


def test_one_deadline_bounds_trickling_headers_and_bodies(servers):
    first, _ = servers
    # httpx's timeout is per read: 5 bytes every 0.25 s, or 64 every 0.1 s, never trips it
    first.route("/slow-head", Route(200, b"late", head_trickle_s=0.25))
    first.route("/slow-body", Route(200, b"y" * 6400, trickle_s=0.1))
    for path in ("/slow-head", "/slow-body"):
        started = time.monotonic()
        with pytest.raises(FetchError, match="no complete answer within 1 s") as err:
            read_url(first.base + path, timeout_s=1.0, policy=LOCAL)
        assert err.value.transient and time.monotonic() - started < 2.0
