"""Dispatch's proxy families against the fake OpenAI over real HTTP: bodies, answers, retries, usage.

The ProxyService is driven with the frames the edge sends; the fake upstream validates the
requests with the openai SDK's types and records the files it got by SHA-256. Flaky models
(`fake-flaky-<status>-<n>`, fakes/scenario.py) fail on purpose; waits between retries go to
a recording sleep.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import pytest

from fakes.openai_families import speech_bytes
from fakes.openai_upstream import FakeOpenAI
from fakes.serve import BackgroundServer
from orqen.v1 import common_pb2, dispatch_pb2
from orqen_common.context import Principal, principal_var
from orqen_common.errors import OrqenError
from orqen_dispatch.account_config import AccountConfig
from orqen_dispatch.providers.anthropic import AnthropicMessages
from orqen_dispatch.providers.openai import OpenAICompatible
from orqen_dispatch.proxy import OPENAI_FAMILIES, ProxyService
from orqen_dispatch.resilience import CircuitBreakers, Dispatcher, RetryPolicy
from orqen_dispatch.router import ProviderRouter
from orqen_dispatch.upstream_http import open_client

KEY = "sk-upstream"
ACCOUNT = "00000000-0000-0000-0000-000000000001"
Frame = dispatch_pb2.ProxyRequestFrame


class _NoSavedCredentials:
    """An account with nothing saved: the operator's keys apply (AccountConfigs' interface)."""

    async def get(self, account_id: str) -> AccountConfig:
        return AccountConfig({})


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[FakeOpenAI, str]]:
    fake = FakeOpenAI(KEY)
    with BackgroundServer(fake.app()) as server:
        yield fake, server.url + "/v1"


@pytest.fixture
async def service(upstream: tuple[FakeOpenAI, str]) -> AsyncIterator[tuple[ProxyService, list[float]]]:
    principal_var.set(Principal("service"))
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    async with open_client(5, 5) as http:
        router = ProviderRouter(
            {
                "openai": OpenAICompatible("openai", http, upstream[1], KEY, OPENAI_FAMILIES),
                "local": OpenAICompatible("local", http, upstream[1], KEY),
                "anthropic": AnthropicMessages("anthropic", http, "http://127.0.0.1:9", KEY, 1024),
            },
            "openai",
        )
        dispatcher = Dispatcher(RetryPolicy(max_attempts=3), CircuitBreakers(), sleep=sleep)
        yield ProxyService(router, dispatcher, _NoSavedCredentials()), waits  # type: ignore[arg-type]


def _head(family: str, model: str, body_kind: str = "json", **credentials: str) -> Frame:
    context = common_pb2.RequestContext(request_id="req_proxy", account_id=ACCOUNT, ingress=f"proxy/{family}")
    return Frame(
        head=dispatch_pb2.ProxyHead(
            context=context, family=family, model=model, body_kind=body_kind, credentials=credentials
        )
    )


async def _frames(*frames: Frame) -> AsyncIterator[Frame]:
    for frame in frames:
        yield frame


async def _run(service: ProxyService, *frames: Frame) -> tuple[dispatch_pb2.ProxyResponseHead, bytes, Any]:
    head, body, summary = None, b"", None
    async for reply in service.serve(_frames(*frames)):
        kind = reply.WhichOneof("frame")
        if kind == "head":
            head = reply.head
        elif kind == "body_chunk":
            body += reply.body_chunk
        else:
            summary = reply.summary
    assert head is not None
    return head, body, summary


def _json(body: dict[str, Any]) -> list[Frame]:
    raw = orjson.dumps(body)
    return [Frame(json_chunk=raw[:7]), Frame(json_chunk=raw[7:])]  # split anywhere: only the whole is JSON


async def test_a_json_family_is_retried_before_any_byte_went_back(service: Any) -> None:
    proxy, waits = service
    model = "fake-flaky-503-2-embed"
    head, body, summary = await _run(
        proxy, _head("embeddings", f"openai/{model}"), *_json({"model": f"openai/{model}", "input": "two words"})
    )
    assert head.status == 200 and head.content_type == "application/json"
    assert orjson.loads(body)["model"] == model  # the provider's own name went upstream
    assert [a.status for a in summary.attempts] == [503, 503, 200]
    assert len(waits) == 2
    assert (summary.provider, summary.model, summary.usage.input_tokens) == ("openai", model, 2)


async def test_an_upload_is_sent_once_and_streamed_exactly(service: Any, upstream: Any) -> None:
    proxy, _ = service
    fake, _ = upstream
    audio = bytes(range(256)) * 1000
    frames = [
        _head("audio/transcriptions", "local/fake-flaky-503-1-whisper", "multipart"),
        Frame(field=dispatch_pb2.FormField(name="model", value="local/fake-flaky-503-1-whisper")),
        Frame(file=dispatch_pb2.FilePart(name="file", filename='a "b".mp3', content_type="audio/mpeg")),
        *(Frame(file_chunk=audio[i : i + 10_000]) for i in range(0, len(audio), 10_000)),
        Frame(field=dispatch_pb2.FormField(name="language", value="en")),
    ]
    with pytest.raises(OrqenError) as failed:
        await _run(proxy, *frames)
    assert failed.value.http_status == 503  # the body is gone: no second call

    head, body, summary = await _run(proxy, *frames)  # the flaky model fails only once
    assert head.status == 200
    sent = fake.requests[-1]
    assert sent["fields"] == {"model": ["fake-flaky-503-1-whisper"], "language": ["en"]}
    uploaded = sent["files"][0]
    assert (uploaded.filename, uploaded.size) == ('a "b".mp3', len(audio))
    assert uploaded.sha256 == hashlib.sha256(audio).hexdigest()
    assert orjson.loads(body)["text"].startswith('Transcribed a "b".mp3')
    assert (summary.usage.input_tokens, [a.status for a in summary.attempts]) == (50, [200])


async def test_binary_speech_comes_back_in_frames_byte_for_byte(service: Any) -> None:
    proxy, _ = service
    replies = [
        reply
        async for reply in proxy.serve(
            _frames(
                _head("audio/speech", "tts-1"), *_json({"model": "tts-1", "voice": "alloy", "input": "Hello there"})
            )
        )
    ]
    chunks = [r.body_chunk for r in replies if r.WhichOneof("frame") == "body_chunk"]
    assert replies[0].head.content_type == "audio/mpeg"
    assert b"".join(chunks) == speech_bytes("Hello there")
    assert len(chunks) > 1 and max(map(len, chunks)) <= 64 * 1024


async def test_the_callers_provider_key_wins_over_the_operators(service: Any) -> None:
    proxy, _ = service
    with pytest.raises(OrqenError) as refused:
        await _run(proxy, _head("moderations", "", api_key="sk-callers-own"), *_json({"input": "anything"}))
    assert refused.value.http_status == 401 and "Incorrect API key" in refused.value.message


@pytest.mark.parametrize(
    ("family", "model", "message"),
    [
        ("rerank", "gpt-4o", "The openai provider does not offer /v1/rerank"),
        ("embeddings", "claude-sonnet-4-6", "The anthropic provider does not offer /v1/embeddings"),
        ("embeddings", "orqen/auto", "Routing strings"),
        ("embeddings", "", "'model' is required"),
    ],
)
async def test_calls_no_provider_can_take_are_refused_before_any_upstream_call(
    service: Any, family: str, model: str, message: str
) -> None:
    proxy, _ = service
    with pytest.raises(OrqenError) as refused:
        await _run(proxy, _head(family, model), *_json({"model": model, "input": "x"}))
    assert refused.value.http_status == 400 and message in refused.value.message
