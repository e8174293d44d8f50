"""A provider upstream inside the test: dispatch's `UpstreamClient` answered by a function, no socket.

Unit tests of the provider translators hand `MockUpstream(handle)` to a provider where
production hands the aiohttp pool. `handle` sees each request as it would go on the wire
(`SentRequest`: method, URL, headers, body bytes) and returns a `MockResponse`, whose body
can be an async iterable to stream it piece by piece.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from orqen_dispatch.upstream_http import UpstreamRequest, UpstreamResponse, rechunked, split_lines


@dataclass(slots=True)
class SentRequest:
    """A request as the provider sent it; a streamed body is read whole."""

    method: str
    url: URL
    headers: CIMultiDictProxy[str]
    content: bytes

    def json(self) -> Any:
        return orjson.loads(self.content)


class MockResponse:
    """A canned answer: `json` or `content` (bytes, or an async iterable streamed as it yields)."""

    def __init__(
        self,
        status: int = 200,
        *,
        json: Any = None,
        content: bytes | AsyncIterable[bytes] = b"",
        headers: Mapping[str, str] | None = None,
        reason: str = "",
    ) -> None:
        self.status = status
        self.reason = reason
        fields = CIMultiDict(headers or {})
        if json is not None:
            content = orjson.dumps(json)
            fields.setdefault("content-type", "application/json")
        self.headers = CIMultiDictProxy(fields)
        self._content = content
        self.closed = False

    async def _pieces(self) -> AsyncIterator[bytes]:
        if isinstance(self._content, bytes):
            if self._content:
                yield self._content
            return
        async for piece in self._content:
            yield piece

    async def read(self) -> bytes:
        return b"".join([piece async for piece in self._pieces()])

    def chunks(self, size: int | None = None) -> AsyncIterator[bytes]:
        return self._pieces() if size is None else rechunked(self._pieces(), size)

    def lines(self) -> AsyncIterator[str]:
        return split_lines(self._pieces())

    def close(self) -> None:
        self.closed = True


Handler = Callable[[SentRequest], MockResponse | Awaitable[MockResponse]]


class MockUpstream:
    """An `UpstreamClient` whose every request is answered by `handle`."""

    def __init__(self, handle: Handler) -> None:
        self._handle = handle
        self.responses: list[MockResponse] = []

    async def open(self, request: UpstreamRequest) -> UpstreamResponse:
        content = await _whole(request.body)
        url = URL(request.url, encoded=True)
        headers = CIMultiDict(request.headers)
        # As aiohttp writes it on the wire (and SigV4 signs it).
        headers.setdefault("host", url.host_port_subcomponent or "")
        sent = SentRequest(request.method, url, CIMultiDictProxy(headers), content)
        answer = self._handle(sent)
        response = await answer if inspect.isawaitable(answer) else answer
        self.responses.append(response)
        return response


async def _whole(body: bytes | AsyncIterable[bytes] | None) -> bytes:
    if body is None or isinstance(body, bytes):
        return body or b""
    return b"".join([piece async for piece in body])
