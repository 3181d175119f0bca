"""The one way the agent fetches a URL, for chat `/feed` and `seal ingest` alike.

- **Addresses**: every connection (the first request and every redirect hop) resolves the host
  and refuses loopback, private, link-local (the cloud metadata service at 169.254.169.254),
  multicast, reserved and unspecified addresses, unless `network.allow_private_addresses` or
  `network.allowed_networks` allow them. The check sits where httpcore opens the socket, after
  DNS resolution, and the socket goes to the address that was checked, so a name that resolves
  differently a moment later (DNS rebinding) cannot slip past. Proxies from the environment are
  not used: through a proxy the address could not be checked.
- **Deadline**: httpx's timeout bounds each network operation, so a server that trickles a byte
  at a time (in its headers or its body) would never trip it; every read and write here is
  bounded by what is left of one whole-request deadline, redirects included.
- **Size**: a declared Content-Length over the cap is refused before the body; the body is
  streamed and abandoned past the cap.
- **Politeness and conditional requests** (ingest): a per-host delay, ETag / Last-Modified.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from agent.core.config import NetworkConfig
from agent.core.errors import DocumentError

MAX_REDIRECTS = 5
USER_AGENT = "seal-agent/0.1 (+https://arxiv.org/abs/2506.10943)"
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class FetchError(DocumentError):
    """A request that failed; `transient` errors (timeouts, 5xx, 429, network) are retried."""

    def __init__(self, message: str, *, transient: bool):
        super().__init__(message)
        self.transient = transient


class AddressRefused(FetchError):
    """A connection to an address the policy does not allow (raised before connecting)."""

    def __init__(self, message: str):
        super().__init__(message, transient=False)


@dataclass(frozen=True)
class AddressPolicy:
    """Which non-public addresses a URL may reach (public ones always may)."""

    allow_private: bool = False  # network.allow_private_addresses
    allowed_networks: tuple[str, ...] = ()  # network.allowed_networks, e.g. ("127.0.0.1/32",)

    def refusal(self, address: Address) -> str | None:
        """Why `address` may not be reached, or None."""
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
        kind = address_class(address)
        if kind is None or self.allow_private:
            return None
        if any(address in ipaddress.ip_network(net) for net in self.allowed_networks):
            return None
        return kind


def address_class(address: Address) -> str | None:
    """The kind of non-public address this is, or None for a public (global unicast) one."""
    if address.is_global and not address.is_multicast:
        return None
    for kind, test in (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local (cloud metadata)", address.is_link_local),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
    ):
        if test:
            return kind
    return "non-public"


class _DeadlineStream:
    """httpcore's NetworkStream interface over a socket: every read and write waits at most what
    is left of the request's deadline."""

    def __init__(self, stream: Any, backend: _GuardedBackend):
        self._stream, self._backend = stream, backend

    def _left(self, timeout: float | None, error: str) -> float:
        import httpcore  # httpx's core: both load with the first Fetcher

        left = self._backend.deadline - time.monotonic()
        if left <= 0:
            raise getattr(httpcore, error)("whole-request deadline passed")
        return left if timeout is None else min(timeout, left)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, self._left(timeout, "ReadTimeout"))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, self._left(timeout, "WriteTimeout"))

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None) -> _DeadlineStream:
        left = self._left(timeout, "ConnectTimeout")
        tls = self._stream.start_tls(ssl_context, server_hostname, left)
        return _DeadlineStream(tls, self._backend)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


def _resolve(host: str, port: int) -> list[Address]:
    """Every address `host` resolves to (an address literal: itself), in resolver order."""
    import httpcore

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from None
    found = (ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos)  # no zone id
    return list(dict.fromkeys(found))


class _GuardedBackend:
    """httpcore's NetworkBackend interface: its sockets, opened only to addresses the policy
    allows, each bounded by the request's deadline."""

    def __init__(self, policy: AddressPolicy):
        import httpcore  # httpx's core: both load with the first Fetcher

        self.policy = policy
        self.deadline = float("inf")  # set by Fetcher.get for each request
        self._inner = httpcore.SyncBackend()

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        import httpcore

        host = host.decode() if isinstance(host, bytes) else host
        addresses = _resolve(host, port)
        for address in addresses:  # every address the name has: none may be refused
            refusal = self.policy.refusal(address)
            if refusal:
                named = host if host == str(address) else f"{host} resolves to {address}"
                raise AddressRefused(
                    f"{named}: not a public address ({refusal}); URLs may only reach public "
                    "addresses unless network.allow_private_addresses or "
                    "network.allowed_networks allow others"
                )
        error: Exception = httpcore.ConnectError(f"{host} has no address")
        for address in addresses:  # the checked address, not the name again (DNS rebinding)
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise httpcore.ConnectTimeout("whole-request deadline passed")
            wait = left if timeout is None else min(timeout, left)
            try:
                stream = self._inner.connect_tcp(
                    str(address), port, wait, local_address, socket_options
                )
                return _DeadlineStream(stream, self)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        raise error

    def connect_unix_socket(self, path, timeout=None, socket_options=None):
        raise OSError("unix sockets are not fetched")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def _transport(backend: _GuardedBackend):
    """httpx's own transport, its connection pool opening sockets through `backend`."""
    import httpcore
    import httpx

    transport = httpx.HTTPTransport(trust_env=False)
    # The pool httpx builds itself, with the one difference: the network backend.
    transport._pool = httpcore.ConnectionPool(
        ssl_context=httpx.create_ssl_context(trust_env=False), network_backend=backend
    )
    return transport


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


class Fetcher:
    """One HTTP client (for a whole ingest run, or one `/feed`); waits `politeness_s` between
    requests to one host. Not for concurrent use: the deadline belongs to the request under way."""

    def __init__(
        self,
        *,
        timeout_s: float,
        max_bytes: int,
        politeness_s: float = 0.0,
        policy: AddressPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        # Deferred: httpx takes ~0.15 s to import, which `seal status` and `seal history` skip.
        import httpx

        self.timeout_s = timeout_s
        self.max_bytes = max_bytes
        self.politeness_s = politeness_s
        self._clock = clock
        self._sleep = sleep
        self._last_request: dict[str, float] = {}  # host -> clock time of its last request
        self._backend = _GuardedBackend(policy or AddressPolicy())
        self._client = httpx.Client(
            transport=_transport(self._backend),
            follow_redirects=True,
            max_redirects=MAX_REDIRECTS,
            timeout=timeout_s,
            headers={"User-Agent": USER_AGENT},
            trust_env=False,
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

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
        self._backend.deadline = time.monotonic() + self.timeout_s
        try:
            with self._client.stream("GET", url, headers=headers) as response:
                return self._read(url, response)
        except AddressRefused as exc:  # raised where the socket opens, which knows no URL
            raise AddressRefused(f"{url} refused: {exc}") from None
        except httpx.TooManyRedirects:
            raise FetchError(
                f"{url}: more than {MAX_REDIRECTS} redirects (a loop?)", transient=False
            ) from None
        except httpx.TimeoutException:
            raise FetchError(
                f"{url}: no complete answer within {self.timeout_s:g} s; try again later",
                transient=True,
            ) from None
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            raise FetchError(f"{url} is not a valid http(s) URL ({exc})", transient=False) from None
        except httpx.HTTPError as exc:
            raise FetchError(
                f"{url} is unreachable ({exc}); check the address", transient=True
            ) from None
        finally:
            self._backend.deadline = float("inf")

    def _read(self, url: str, response: Any) -> Response:
        if response.status_code == 304:
            return self._response(response, b"")
        if response.status_code >= 400:
            transient = response.status_code >= 500 or response.status_code in (408, 429)
            raise FetchError(
                f"{url}: the server answered HTTP {response.status_code}", transient=transient
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
            chunks.append(chunk)
        return self._response(response, b"".join(chunks))

    @staticmethod
    def _response(response: Any, body: bytes) -> Response:
        return Response(
            status=response.status_code,
            body=body,
            content_type=response.headers.get("content-type"),
            charset=response.charset_encoding,
            url=str(response.url),
            etag=response.headers.get("etag"),
            last_modified=response.headers.get("last-modified"),
        )


def policy_of(network: NetworkConfig) -> AddressPolicy:
    """The address policy the `network` config section sets."""
    return AddressPolicy(network.allow_private_addresses, tuple(network.allowed_networks))
