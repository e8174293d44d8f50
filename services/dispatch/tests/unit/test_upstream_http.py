"""The pieces of dispatch's upstream client that do not need a socket: lines, pieces, URLs, proxies."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp.base_protocol import BaseProtocol

from orqen_dispatch.upstream_http import AiohttpClient, _wire_url, arrived, open_client, rechunked, split_lines


async def pieces(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_lines_split_at_every_ending_even_across_pieces() -> None:
    body = pieces(b"event: a\r", b"\ndata: 1\n\nda", b"ta: caf\xc3", b"\xa9\rlast")
    assert [line async for line in split_lines(body)] == ["event: a", "data: 1", "", "data: caf\u00e9", "last"]


async def test_a_line_is_yielded_as_soon_as_its_ending_arrives() -> None:
    lines = split_lines(pieces(b"data: 1\n", b"data: 2\n"))
    assert await anext(lines) == "data: 1"


async def test_pieces_are_at_most_the_size_asked_and_never_wait_to_fill() -> None:
    assert [p async for p in rechunked(pieces(b"abcdefg", b"h", b""), 3)] == [b"abc", b"def", b"g", b"h", b""]


def test_a_wire_ready_url_goes_byte_for_byte() -> None:
    url = "https://bedrock-runtime.us-east-1.amazonaws.com/model/a.b%3A0/converse"
    assert _wire_url(url).raw_path == "/model/a.b%3A0/converse"
    assert _wire_url("http://llm.local/v 1/models").raw_path == "/v%201/models"


async def test_the_environment_proxy_applies_except_where_no_proxy_says(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "no_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "localhost,.corp.example")
    async with open_client(1, 1) as client:
        assert isinstance(client, AiohttpClient)
        assert client._proxy(_wire_url("https://api.openai.com/v1/models")) == "http://proxy.internal:3128"
        assert client._proxy(_wire_url("https://llm.corp.example/v1/models")) is None
        assert client._proxy(_wire_url("http://api.openai.com/v1/models")) is None  # no HTTP_PROXY set


async def test_bytes_that_arrived_before_a_broken_connection_come_out_before_its_error() -> None:
    content = aiohttp.StreamReader(BaseProtocol(asyncio.get_running_loop()), 2**16, loop=asyncio.get_running_loop())
    content.feed_data(b"data: first words\n\n")
    content.set_exception(aiohttp.ClientPayloadError("the connection broke"))
    received: list[bytes] = []
    with pytest.raises(aiohttp.ClientPayloadError):
        async for data in arrived(content):
            received.append(data)
    assert received == [b"data: first words\n\n"]
