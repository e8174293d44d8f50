"""The OpenAI-compatible adapter against a fake that validates the wire format."""

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from fakes.openai_upstream import FakeOpenAI
from fakes.serve import BackgroundServer, free_port
from orqen_dispatch.providers.base import StreamState, UpstreamError
from orqen_dispatch.providers.openai import OpenAICompatible

KEY = "sk-upstream"
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello world"}], "temperature": 0.2}


@pytest.fixture(scope="module")
def fake() -> Iterator[tuple[FakeOpenAI, str]]:
    upstream = FakeOpenAI(KEY)
    with BackgroundServer(upstream.app()) as server:
        yield upstream, server.url + "/v1"


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as http:
        yield http


async def test_completion_and_usage(fake: tuple[FakeOpenAI, str], client: httpx.AsyncClient) -> None:
    upstream, url = fake
    result = await OpenAICompatible("openai", client, url, KEY).complete(CHAT, "gpt-4o-mini")
    assert result.body["choices"][0]["message"]["content"] == "echo: hello world"
    assert result.usage.output_tokens == 3 and result.usage.input_tokens > 0
    assert upstream.requests[-1]["body"]["temperature"] == 0.2


async def test_stream_always_measures_usage_but_forwards_it_only_when_asked(
    fake: tuple[FakeOpenAI, str], client: httpx.AsyncClient
) -> None:
    provider = OpenAICompatible("openai", client, fake[1], KEY)
    state = StreamState()
    chunks = [c async for c in provider.stream({**CHAT, "stream": True}, "gpt-4o-mini", state)]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "echo: hello world"
    assert state.usage.output_tokens == 3
    assert all("usage" not in c for c in chunks)
    asked = [
        c
        async for c in provider.stream(
            {**CHAT, "stream": True, "stream_options": {"include_usage": True}}, "gpt-4o-mini", StreamState()
        )
    ]
    assert asked[-1]["choices"] == [] and asked[-1]["usage"]["completion_tokens"] == 3


@pytest.mark.parametrize(("model", "status", "retry_after"), [("fake-429", 429, 7.0), ("fake-500", 500, None)])
async def test_upstream_errors_keep_status_message_and_retry_after(
    fake: tuple[FakeOpenAI, str], client: httpx.AsyncClient, model: str, status: int, retry_after: float | None
) -> None:
    with pytest.raises(UpstreamError) as err:
        await OpenAICompatible("openai", client, fake[1], KEY).complete(CHAT, model)
    assert (err.value.status, err.value.retry_after) == (status, retry_after)
    assert err.value.message


async def test_a_wrong_operator_key_is_reported_as_the_upstreams_401(
    fake: tuple[FakeOpenAI, str], client: httpx.AsyncClient
) -> None:
    with pytest.raises(UpstreamError) as err:
        await OpenAICompatible("openai", client, fake[1], "sk-wrong").complete(CHAT, "gpt-4o-mini")
    assert err.value.status == 401 and "API key" in err.value.message


async def test_unreachable_upstream_is_502(client: httpx.AsyncClient) -> None:
    provider = OpenAICompatible("openai", client, f"http://127.0.0.1:{free_port()}/v1", KEY)
    with pytest.raises(UpstreamError) as err:
        await provider.complete(CHAT, "gpt-4o-mini")
    assert err.value.status == 502


async def test_a_stream_that_breaks_midway_raises_after_the_chunks_it_sent(
    fake: tuple[FakeOpenAI, str], client: httpx.AsyncClient
) -> None:
    received = []
    with pytest.raises(UpstreamError):
        async for chunk in OpenAICompatible("openai", client, fake[1], KEY).stream(
            {**CHAT, "stream": True}, "fake-broken-stream", StreamState()
        ):
            received.append(chunk)
    assert received  # the caller already got the first chunks before the break
