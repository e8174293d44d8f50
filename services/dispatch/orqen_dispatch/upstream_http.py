"""Dispatch's one HTTP client to the providers: an aiohttp session, and the request and answer it deals in.

aiohttp rather than httpx, and so HTTP/1.1 rather than HTTP/2, for the CPU a call costs:
httpx, httpcore and anyio were a quarter of dispatch's CPU samples, and one small chat call
through the OpenAI adapter costs about 110 µs of CPU on aiohttp against 450 µs on httpx
(250 against 890 µs streamed; bench/upstream_call.py, docs/performance.md). What
HTTP/2 gave, a warm connection, the pool gives: up to 1000 HTTP/1.1 connections, each kept
alive for the next call.

Providers speak to an `UpstreamClient`: the aiohttp one here in production, a recording
fake in unit tests. Failures come out as aiohttp's exceptions (`aiohttp.ClientError`,
`TimeoutError`); `providers.base` maps them, and error statuses, to `UpstreamError`.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Protocol
from urllib.request import getproxies_environment, proxy_bypass

import aiohttp
from yarl import URL

# What a call, or a read of its answer, raises when the provider cannot be reached, breaks the
# connection or stops sending within the read timeout (providers.base maps each to an UpstreamError).
UPSTREAM_ERRORS = (aiohttp.ClientError, TimeoutError)
# An idle connection to a provider is kept this long for the next call.
KEEPALIVE_SECONDS = 120.0
# Connections open at once, over every provider.
MAX_CONNECTIONS = 1000
# Resolved provider addresses are reused this long.
DNS_CACHE_SECONDS = 300


@dataclass(slots=True)
class UpstreamRequest:
    """One call to a provider, its URL already percent-encoded as it goes on the wire.

    A byte body goes as it is (its bytes are what SigV4 signs); an iterable streams,
    chunked, and can be sent only once.
    """

    method: str
    url: str
    headers: dict[str, str]
    body: bytes | AsyncIterable[bytes] | None = None


class UpstreamResponse(Protocol):
    """A provider's answer: status and headers read, the body still to read. Close it."""

    @property
    def status(self) -> int: ...

    @property
    def reason(self) -> str: ...

    @property
    def headers(self) -> Mapping[str, str]:
        """Case-insensitive."""
        ...

    async def read(self) -> bytes: ...

    def chunks(self, size: int | None = None) -> AsyncIterator[bytes]:
        """The body as it arrives, in pieces of at most `size` bytes (None: as they come)."""
        ...

    def lines(self) -> AsyncIterator[str]:
        """The body's lines as they arrive (split at \\n, \\r\\n or \\r; without the line ending)."""
        ...

    def close(self) -> None:
        """Free the connection: back to the pool when the body was read to its end, else closed."""
        ...


class UpstreamClient(Protocol):
    """What providers send their calls through."""

    async def open(self, request: UpstreamRequest) -> UpstreamResponse:
        """Send the request and return once the answer's status and headers are in."""
        ...


class AiohttpResponse:
    """An aiohttp answer as an `UpstreamResponse`."""

    __slots__ = ("_raw",)

    def __init__(self, raw: aiohttp.ClientResponse) -> None:
        self._raw = raw

    @property
    def status(self) -> int:
        return self._raw.status

    @property
    def reason(self) -> str:
        return self._raw.reason or ""

    @property
    def headers(self) -> Mapping[str, str]:
        return self._raw.headers

    async def read(self) -> bytes:
        return await self._raw.read()

    def chunks(self, size: int | None = None) -> AsyncIterator[bytes]:
        pieces = arrived(self._raw.content)
        return pieces if size is None else rechunked(pieces, size)

    def lines(self) -> AsyncIterator[str]:
        return split_lines(arrived(self._raw.content))

    def close(self) -> None:
        self._raw.release()


async def arrived(content: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    """A body's bytes as they arrive, and those that arrived before a broken connection ahead of its error.

    aiohttp's own readers raise the error of a connection that broke as soon as it is known,
    dropping what the provider had sent before it: the first words of a stream cut halfway.
    """
    while True:
        try:
            data = await content.readany()
        except Exception:
            if held := content._read_nowait(-1):
                yield held
            raise
        if not data:
            return
        yield data


async def rechunked(pieces: AsyncIterable[bytes], size: int) -> AsyncIterator[bytes]:
    """The bytes of `pieces` as they arrive, in pieces of at most `size` (nothing waits for a piece to fill)."""
    async for data in pieces:
        if len(data) <= size:
            yield data
            continue
        view = memoryview(data)
        for start in range(0, len(data), size):
            yield bytes(view[start : start + size])


async def split_lines(pieces: AsyncIterable[bytes]) -> AsyncIterator[str]:
    """The lines of a body as they arrive: split at \n, \r\n or \r, without the ending, UTF-8 decoded."""
    pending = bytearray()
    async for data in pieces:
        pending += data
        parts = pending.splitlines(keepends=True)
        if not parts:
            continue
        # A last part without its ending (or ending in a \r that a \n may follow) waits for more.
        pending = bytearray() if parts[-1].endswith(b"\n") else parts.pop()
        for part in parts:
            yield part.rstrip(b"\r\n").decode("utf-8", "replace")
    for part in pending.splitlines():
        yield part.decode("utf-8", "replace")


class AiohttpClient:
    """The production `UpstreamClient`: one aiohttp session, its pool kept warm between calls.

    `proxies` (scheme -> proxy URL, as urllib reads HTTP(S)_PROXY and NO_PROXY): read once
    here, where aiohttp's own `trust_env` would read them, and .netrc, in a thread per request.
    """

    def __init__(self, session: aiohttp.ClientSession, proxies: Mapping[str, str] | None = None) -> None:
        self.session = session
        self._proxies = {k: v for k, v in (proxies or {}).items() if k in ("http", "https", "no")}

    async def open(self, request: UpstreamRequest) -> UpstreamResponse:
        url = _wire_url(request.url)
        proxy = self._proxy(url) if self._proxies else None
        raw = await self.session.request(request.method, url, headers=request.headers, data=request.body, proxy=proxy)
        return AiohttpResponse(raw)

    def _proxy(self, url: URL) -> str | None:
        proxy = self._proxies.get(url.scheme)
        if proxy is None or proxy_bypass(url.host or "", self._proxies):
            return None
        return proxy

    async def close(self) -> None:
        await self.session.close()

    async def __aenter__(self) -> AiohttpClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def open_client(connect_timeout: float, read_timeout: float) -> AiohttpClient:
    """The one connection pool to every provider (call inside the running event loop).

    `connect_timeout` bounds opening a connection (TCP and TLS); `read_timeout` bounds each
    wait for the provider's bytes (the answer's head, then every read of its body), not the
    whole call: a long stream runs as long as the provider keeps sending. Waiting for a free
    connection of the pool is bounded by `read_timeout` too.

    TLS is verified against the system's CAs, or SSL_CERT_FILE / SSL_CERT_DIR when set (a
    private CA). HTTP(S)_PROXY and NO_PROXY apply, as for any HTTP client of the machine.
    The body comes back decoded when a provider compresses it (gzip, deflate), as before.
    """
    connector = aiohttp.TCPConnector(
        limit=MAX_CONNECTIONS,
        limit_per_host=0,
        keepalive_timeout=KEEPALIVE_SECONDS,
        use_dns_cache=True,
        ttl_dns_cache=DNS_CACHE_SECONDS,
        ssl=tls_context(),
    )
    timeout = aiohttp.ClientTimeout(
        total=None, connect=read_timeout, sock_connect=connect_timeout, sock_read=read_timeout
    )
    session = aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=True, raise_for_status=False)
    return AiohttpClient(session, getproxies_environment())


def tls_context() -> ssl.SSLContext:
    """Certificate verification against SSL_CERT_FILE / SSL_CERT_DIR when set, else the system's CAs."""
    cafile = os.environ.get("SSL_CERT_FILE") or None
    capath = os.environ.get("SSL_CERT_DIR") or None
    return ssl.create_default_context(cafile=cafile, capath=capath)


def _wire_url(url: str) -> URL:
    """The URL sent byte for byte when it is wire-ready ASCII (Bedrock's signed %3A stays %3A), else encoded."""
    if url.isascii() and " " not in url:
        return URL(url, encoded=True)
    return URL(url)
