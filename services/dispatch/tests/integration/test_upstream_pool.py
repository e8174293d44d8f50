"""Dispatch's upstream pool keeps its connections to a TLS provider alive and reuses them.

HTTP/1.1 on aiohttp, not HTTP/2 on httpx (upstream_http says why: CPU per request), so what
spares the connection setup is the pool: a call after another goes over the same warm connection,
and concurrent calls open no more connections than there are calls at once.

The validating fake OpenAI runs under hypercorn over TLS with a throwaway localhost certificate,
trusted through SSL_CERT_FILE as an operator would trust a private CA.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypercorn.asyncio import serve
from hypercorn.config import Config

from fakes.openai_upstream import FakeOpenAI
from fakes.serve import free_port
from orqen_common.formats.openai import ChatRequest, CompletionUsage, UserMessage
from orqen_dispatch.__main__ import upstream_client
from orqen_dispatch.providers.base import StreamState
from orqen_dispatch.providers.openai import OpenAICompatible
from orqen_dispatch.settings import DispatchSettings
from orqen_edge.devcert import ensure_dev_certificate

KEY = "sk-upstream"
CHAT = ChatRequest(model="gpt-4o-mini", messages=[UserMessage(content="hello")])


class Recorded:
    """ASGI middleware noting the HTTP version and client connection (address, port) of every request."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: list[tuple[str, tuple[str, int]]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.seen.append((scope["http_version"], tuple(scope["client"])))
        await self.app(scope, receive, send)


@pytest.fixture
async def upstream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Recorded, str]]:
    cert, key = ensure_dev_certificate(tmp_path)  # the edge's development certificate serves any localhost test
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    config = Config()
    port = free_port()
    config.bind = [f"127.0.0.1:{port}"]
    config.certfile, config.keyfile = str(cert), str(key)
    config.alpn_protocols = ["h2", "http/1.1"]
    config.accesslog = config.errorlog = None
    recorded = Recorded(FakeOpenAI(KEY).app())
    stopping = asyncio.Event()
    server = asyncio.create_task(serve(recorded, config, shutdown_trigger=stopping.wait))  # type: ignore[arg-type]
    for _ in range(100):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        break
    yield recorded, f"https://localhost:{port}/v1"
    stopping.set()
    await server


async def test_calls_reuse_kept_alive_connections(
    upstream: tuple[Recorded, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    recorded, url = upstream
    monkeypatch.setenv("ORQEN_INTERNAL_TOKEN", "t")
    async with upstream_client(DispatchSettings()) as http:
        provider = OpenAICompatible("openai", http, url, KEY)
        for _ in range(3):
            await provider.complete(CHAT, "gpt-4o-mini", {})
        chunks = [c async for c in provider.stream(CHAT, "gpt-4o-mini", {}, StreamState())]
        await provider.complete(CHAT, "gpt-4o-mini", {})
        one_after_another = {client for _, client in recorded.seen}
        for _ in range(3):
            answers = await asyncio.gather(*(provider.complete(CHAT, "gpt-4o-mini", {}) for _ in range(4)))
    assert all(a.body.choices[0].message.content == "echo: hello" for a in answers)
    usage = chunks[-1].usage
    assert isinstance(usage, CompletionUsage) and usage.completion_tokens == 7
    assert {version for version, _ in recorded.seen} == {"1.1"} and len(recorded.seen) == 5 + 3 * 4
    assert len(one_after_another) == 1  # the stream read to its end gave its connection back too
    # Three rounds of four calls at once: at most four connections in all, the first among them.
    connections = {client for _, client in recorded.seen}
    assert len(connections) <= 4
