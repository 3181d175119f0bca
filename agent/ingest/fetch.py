"""HTTP for ingestion: conditional GETs (ETag / Last-Modified), a per-host politeness delay,
a whole-request deadline, a size cap, and exponential backoff with jitter for retries.

httpx's timeout bounds each network operation, so a server that trickles one byte at a time
would never trip it; the deadline below bounds the whole request, which is what a long-running
ingester needs to stay responsive.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from agent.documents import MAX_REDIRECTS, USER_AGENT, DocumentError


class FetchError(DocumentError):
    """A request that failed; `transient` errors (timeouts, 5xx, 429, network) are retried."""

    def __init__(self, message: str, *, transient: bool):
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class Response:
    status: int  # 200, or 304 when the conditional request found nothing new
    body: bytes
    content_type: str | None
    charset: str | None
    url: str  # after redirects
    etag: str | None
    last_modified: str | None

    @property
    def not_modified(self) -> bool:
        return self.status == 304


def backoff_delay(failures: int, base_s: float, max_s: float, rng: random.Random) -> float:
    """Delay before the next try after `failures` consecutive failures: exponential, capped, with
    "equal jitter" (half fixed, half random) so that many sources failing together spread out."""
    ceiling = min(max_s, base_s * 2 ** max(failures - 1, 0))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


class Fetcher:
    """One HTTP client for the whole run; waits `politeness_s` between requests to one host."""

    def __init__(
        self,
        *,
        timeout_s: float,
        max_bytes: int,
        politeness_s: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        import httpx

        self.timeout_s = timeout_s
        self.max_bytes = max_bytes
        self.politeness_s = politeness_s
        self._clock = clock
        self._sleep = sleep
        self._last_request: dict[str, float] = {}  # host -> clock time of its last request
        self._client = httpx.Client(
            follow_redirects=True,
            max_redirects=MAX_REDIRECTS,
            timeout=timeout_s,
            headers={"User-Agent": USER_AGENT},
        )

    def close(self) -> None:
        self._client.close()

    def _wait_for_host(self, url: str) -> None:
        host = urlsplit(url).netloc.lower()
        last = self._last_request.get(host)
        if last is not None:
            wait = last + self.politeness_s - self._clock()
            if wait > 0:
                self._sleep(wait)
        self._last_request[host] = self._clock()

    def get(self, url: str, *, etag: str | None = None, last_modified: str | None = None):
        """GET `url`; with `etag`/`last_modified` a conditional request (304: `not_modified`)."""
        import httpx

        headers = {}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        self._wait_for_host(url)
        deadline = self._clock() + self.timeout_s
        try:
            with self._client.stream("GET", url, headers=headers) as response:
                if response.status_code == 304:
                    return self._response(response, b"")
                if response.status_code >= 400:
                    transient = response.status_code >= 500 or response.status_code in (408, 429)
                    raise FetchError(
                        f"{url}: the server answered HTTP {response.status_code}",
                        transient=transient,
                    )
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > self.max_bytes:
                    raise FetchError(
                        f"{url} is {int(declared):,} bytes, over the limit of {self.max_bytes:,}",
                        transient=False,
                    )
                chunks, size = [], 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise FetchError(
                            f"{url} is over the limit of {self.max_bytes:,} bytes", transient=False
                        )
                    if self._clock() > deadline:
                        raise httpx.ReadTimeout("whole-request deadline passed")
                    chunks.append(chunk)
                return self._response(response, b"".join(chunks))
        except httpx.TooManyRedirects:
            raise FetchError(
                f"{url}: more than {MAX_REDIRECTS} redirects (a loop?)", transient=False
            ) from None
        except httpx.TimeoutException:
            raise FetchError(
                f"{url}: no complete answer within {self.timeout_s:g} s", transient=True
            ) from None
        except httpx.InvalidURL as exc:
            raise FetchError(f"{url} is not a valid URL ({exc})", transient=False) from None
        except httpx.HTTPError as exc:
            raise FetchError(f"{url} is unreachable ({exc})", transient=True) from None

    @staticmethod
    def _response(response, body: bytes) -> Response:
        return Response(
            status=response.status_code,
            body=body,
            content_type=response.headers.get("content-type"),
            charset=response.charset_encoding,
            url=str(response.url),
            etag=response.headers.get("etag"),
            last_modified=response.headers.get("last-modified"),
        )
