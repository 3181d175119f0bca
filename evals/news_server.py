"""A local news server for ingestion tests, the soak run and the benchmark: real HTTP on
127.0.0.1, feeds that change over time, and the hostile cases a days-long ingester meets.

    /rss.xml /atom.xml /feed.json   the newest stories (RSS 2.0, Atom, JSON Feed), with ETag and
                                     Last-Modified; conditional requests get 304
    /article/N.html                 story N as an HTML page (menus and scripts around the text)
    any route set with `route()`    fixed status, headers, body, delays (malformed XML, 404/500,
                                     wrong charsets, slow or trickling answers, huge bodies)
    /loop/a <-> /loop/b             a redirect loop

`NewsWorld` writes the stories: distinct topics from a word list, republished with edits, and
published over time by `publish()`; `start()` returns the server and its base URL. The server is
on a loopback address, which seal refuses to fetch by default (agent/web.py): whatever points
seal at it passes `--set` ALLOW_LOCAL (or `LOCAL_POLICY` to a Fetcher).
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import json
import random
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.sax.saxutils import escape

# What lets seal reach this server, and nothing else on the machine's own network.
LOCAL_NETWORK = "127.0.0.1/32"
ALLOW_LOCAL = f'network.allowed_networks=["{LOCAL_NETWORK}"]'

PLACES = [
    "Paris",
    "Rome",
    "Lyon",
    "Milan",
    "Turin",
    "Nice",
    "Genoa",
    "Lille",
    "Pisa",
    "Nantes",
    "Verona",
    "Dijon",
]
THINGS = [
    "bridge",
    "tower",
    "museum",
    "palace",
    "river",
    "garden",
    "library",
    "station",
    "market",
    "theatre",
    "harbour",
]
ACTORS = [
    "mayor",
    "council",
    "engineers",
    "workers",
    "artists",
    "farmers",
    "students",
    "doctors",
    "sailors",
]
VERBS = [
    "opened",
    "closed",
    "repaired",
    "painted",
    "measured",
    "visited",
    "rebuilt",
    "moved",
    "cleaned",
]
EXTRAS = (
    "The work took {n} days and cost {m} thousand coins.",
    "About {n} people came to watch on the first morning.",
    "The {thing} is {n} metres long and {m} metres wide.",
    "Local papers said the {thing} had been quiet for {n} years.",
    "A second {thing} near {place} will follow in {n} weeks.",
)


@dataclass
class Story:
    number: int
    title: str
    sentences: list[str]
    published_at: float
    revision: int = 0

    @property
    def text(self) -> str:
        return " ".join(self.sentences)


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # before the headers
    trickle_s: float = 0.0  # between 64-byte chunks of the body
    head_trickle_s: float = 0.0  # between 5-byte chunks of the status line and headers


class NewsWorld:
    """Stories published over time; `edit()` republishes one with a changed fact."""

    def __init__(self, seed: int = 0, feed_size: int = 20):
        self.rng = random.Random(seed)
        self.stories: list[Story] = []
        self.feed_size = feed_size
        self.lock = threading.Lock()
        self.version = 0  # bumps on every change: the feeds' ETag

    def _sentence(self, place: str, thing: str) -> str:
        r = self.rng
        template = r.choice(EXTRAS)
        return template.format(n=r.randint(2, 999), m=r.randint(2, 99), thing=thing, place=place)

    def publish(self, n: int = 1) -> list[Story]:
        with self.lock:
            new = []
            for _ in range(n):
                r, number = self.rng, len(self.stories) + 1
                place, thing = r.choice(PLACES), r.choice(THINGS)
                actor, verb = r.choice(ACTORS), r.choice(VERBS)
                lead = f"In {place} the {actor} {verb} the old {thing} number {number}."
                body = [self._sentence(place, thing) for _ in range(r.randint(3, 6))]
                story = Story(
                    number,
                    f"{actor.title()} {verb} the {thing} in {place}",
                    [lead, *body],
                    time.time(),
                )
                self.stories.append(story)
                new.append(story)
            self.version += 1
            return new

    def edit(self, number: int) -> Story:
        """Republish story `number` with one changed and one added sentence (a correction)."""
        with self.lock:
            story = self.stories[number - 1]
            place = story.sentences[0].split()[1]
            thing = story.sentences[0].split()[-3]
            story.sentences[-1] = self._sentence(place, thing)
            story.sentences.append(f"Update {story.revision + 1}: the {thing} reopens soon.")
            story.revision += 1
            story.published_at = time.time()
            self.version += 1
            return story

    def newest(self) -> list[Story]:
        with self.lock:
            return sorted(self.stories, key=lambda s: s.published_at)[-self.feed_size :][::-1]

    def article_html(self, number: int) -> bytes:
        story = self.stories[number - 1]
        paragraphs = "".join(f"<p>{escape(s)}</p>" for s in story.sentences)
        return (
            "<!DOCTYPE html><html><head><meta charset='utf-8'>"
            f"<title>{escape(story.title)}</title></head><body>"
            "<nav><a href='/'>Home</a> <a href='/world'>World</a> <a href='/sport'>Sport</a></nav>"
            f"<article><h1>{escape(story.title)}</h1>{paragraphs}</article>"
            "<footer>Copyright the local news. <script>track()</script></footer></body></html>"
        ).encode()

    def rss(self, base: str) -> bytes:
        items = "".join(
            f"<item><title>{escape(s.title)}</title><link>{base}/article/{s.number}.html"
            f"?utm_source=rss</link><guid>story-{s.number}</guid>"
            f"<pubDate>{email.utils.formatdate(s.published_at, usegmt=True)}</pubDate>"
            f"<description>{escape(s.sentences[0])} (revision {s.revision})</description></item>"
            for s in self.newest()
        )
        return (
            "<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel>"
            f"<title>Local news</title><link>{base}/</link>{items}</channel></rss>"
        ).encode()

    def atom(self, base: str) -> bytes:
        def when(t: float) -> str:
            return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))

        entries = "".join(
            f"<entry><title>{escape(s.title)}</title><id>urn:story:{s.number}</id>"
            f"<link href='{base}/article/{s.number}.html'/><updated>{when(s.published_at)}"
            f"</updated><summary>{escape(s.sentences[0])} r{s.revision}</summary></entry>"
            for s in self.newest()
        )
        return (
            "<?xml version='1.0' encoding='utf-8'?><feed xmlns='http://www.w3.org/2005/Atom'>"
            f"<title>Local news</title><id>urn:local</id><updated>{when(time.time())}</updated>"
            f"{entries}</feed>"
        ).encode()

    def json_feed(self, base: str) -> bytes:
        items = [
            {
                "id": f"story-{s.number}",
                "url": f"{base}/article/{s.number}.html",
                "title": s.title,
                "content_text": s.text,
                "date_modified": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(s.published_at)),
            }
            for s in self.newest()
        ]
        feed = {"version": "https://jsonfeed.org/version/1.1", "title": "Local", "items": items}
        return json.dumps(feed).encode()


class NewsServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, world: NewsWorld, host: str = "127.0.0.1"):
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, 0), _Handler)
        self.world = world
        self.routes: dict[str, Route] = {}
        self.requests: list[tuple[float, str, dict[str, str]]] = []  # (time, path, headers)
        self.lock = threading.Lock()

    def handle_error(self, request, client_address) -> None:
        pass  # clients that hang up (a killed ingester, a timeout) are part of the test

    @property
    def base(self) -> str:
        host = self.server_address[0]
        return f"http://{f'[{host}]' if ':' in host else host}:{self.server_address[1]}"

    def route(self, path: str, route: Route) -> None:
        with self.lock:
            self.routes[path] = route

    def requests_to(self, path: str) -> list[tuple[float, dict[str, str]]]:
        with self.lock:
            return [(t, h) for t, p, h in self.requests if p == path]


FEEDS = {
    "/rss.xml": ("rss", "application/rss+xml; charset=utf-8"),
    "/atom.xml": ("atom", "application/atom+xml"),
    "/feed.json": ("json_feed", "application/feed+json"),
}


class _Handler(BaseHTTPRequestHandler):
    server: NewsServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet: the tests read `server.requests`
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        server, path = self.server, self.path.split("?")[0]
        with server.lock:
            server.requests.append((time.time(), path, dict(self.headers)))
            route = server.routes.get(path)
        if route is None:
            route = self._world_route(path)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._send(route)

    def _world_route(self, path: str) -> Route:
        world, base = self.server.world, self.server.base
        if path in FEEDS:
            method, ctype = FEEDS[path]
            etag = f'"{world.version}"'
            modified = email.utils.formatdate(world.version * 60.0 + 1e9, usegmt=True)
            if self.headers.get("If-None-Match") == etag:
                return Route(304, b"", {"ETag": etag})
            body = getattr(world, method)(base)
            return Route(
                200, body, {"Content-Type": ctype, "ETag": etag, "Last-Modified": modified}
            )
        if path.startswith("/loop/"):
            other = "/loop/b" if path == "/loop/a" else "/loop/a"
            return Route(302, b"", {"Location": f"{base}{other}"})
        if path.startswith("/article/") and path.endswith(".html"):
            number = path[len("/article/") : -len(".html")]
            if number.isdigit() and 1 <= int(number) <= len(world.stories):
                body = world.article_html(int(number))
                return Route(200, body, {"Content-Type": "text/html; charset=utf-8"})
        return Route(404, b"not found", {"Content-Type": "text/plain"})

    def _send(self, route: Route) -> None:
        if route.delay_s:
            time.sleep(route.delay_s)
        if route.head_trickle_s:  # a few bytes at a time: no single read waits long
            head = f"HTTP/1.1 {route.status} OK\r\nContent-Length: {len(route.body)}\r\n\r\n"
            for i in range(0, len(head), 5):
                self.wfile.write(head[i : i + 5].encode())
                self.wfile.flush()
                time.sleep(route.head_trickle_s)
            self.wfile.write(route.body)
            return
        self.send_response(route.status)
        headers = {"Content-Length": str(len(route.body)), **route.headers}
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if not route.trickle_s:
            self.wfile.write(route.body)
            return
        for i in range(0, len(route.body), 64):
            self.wfile.write(route.body[i : i + 64])
            self.wfile.flush()
            time.sleep(route.trickle_s)


def start(world: NewsWorld | None = None, host: str = "127.0.0.1") -> NewsServer:
    """Serve `world` on `host` (a free port) from a daemon thread; `shutdown()` stops it."""
    server = NewsServer(world or NewsWorld(), host)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def etag_of(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:16] + '"'


def main() -> None:
    """Serve a growing world until interrupted (for trying `seal ingest` by hand)."""
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--every", type=float, default=30.0, help="publish a story every N s")
    args = ap.parse_args()
    world = NewsWorld()
    world.publish(5)
    server = start(world)
    print(f"serving {server.base}/rss.xml /atom.xml /feed.json", flush=True)
    while True:
        time.sleep(args.every)
        world.publish()


if __name__ == "__main__":
    main()
