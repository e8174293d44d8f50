"""The OpenAI-compatible adapter against a fake that validates the wire format."""

from collections.abc import AsyncIterator, Iterator
from typing import Any

import msgspec
import orjson
import pytest

from fakes.openai_upstream import FakeOpenAI
from fakes.serve import BackgroundServer, free_port
from orqen_common.errors import OrqenError
from orqen_common.formats.openai import ChatRequest, CompletionUsage, decode_request, encode_request
from orqen_dispatch.providers.base import StreamState, UpstreamError
from orqen_dispatch.providers.openai import OpenAICompatible
from orqen_dispatch.upstream_http import AiohttpClient, open_client
from orqen_testing.mock_upstream import MockResponse, MockUpstream, SentRequest

KEY = "sk-upstream"
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello world"}], "temperature": 0.2}


def chat(**fields: Any) -> ChatRequest:
    return decode_request(msgspec.json.encode({**BODY, **fields}))


CHAT = chat()


@pytest.fixture(scope="module")
def fake() -> Iterator[tuple[FakeOpenAI, str]]:
    upstream = FakeOpenAI(KEY)
    with BackgroundServer(upstream.app()) as server:
        yield upstream, server.url + "/v1"


@pytest.fixture
async def client() -> AsyncIterator[AiohttpClient]:
    async with open_client(10, 10) as http:
        yield http


async def test_completion_and_usage(fake: tuple[FakeOpenAI, str], client: AiohttpClient) -> None:
    upstream, url = fake
    result = await OpenAICompatible("openai", client, url, KEY).complete(CHAT, "gpt-4o-mini", {})
    assert result.body.choices[0].message.content == "echo: hello world"
    assert (result.usage.prompt, result.usage.output, result.usage.cache_read) == (42, 7, 10)
    assert upstream.requests[-1]["body"]["temperature"] == 0.2


async def test_a_stream_always_asks_for_usage_and_ends_with_the_usage_chunk(
    fake: tuple[FakeOpenAI, str], client: AiohttpClient
) -> None:
    upstream, url = fake
    state = StreamState()
    chunks = [c async for c in OpenAICompatible("openai", client, url, KEY).stream(CHAT, "gpt-4o-mini", {}, state)]
    assert upstream.requests[-1]["body"]["stream_options"] == {"include_usage": True}
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: hello world"
    assert (state.usage.prompt, state.usage.output) == (42, 7)
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and isinstance(usage, CompletionUsage) and usage.completion_tokens == 7


async def test_extensions_openai_cannot_express_are_refused_and_hints_dropped(
    fake: tuple[FakeOpenAI, str], client: AiohttpClient
) -> None:
    upstream, url = fake
    provider = OpenAICompatible("openai", client, url, KEY)
    with pytest.raises(OrqenError, match="top_k") as refused:
        await provider.complete(chat(top_k=3), "gpt-4o-mini", {})
    assert refused.value.http_status == 400
    hinted = chat(
        anthropic_beta=["prompt-caching-2024-07-31"],
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]}
        ],
    )
    await provider.complete(hinted, "gpt-4o-mini", {})  # the fake rejects unknown fields
    sent = upstream.requests[-1]["body"]
    assert "anthropic_beta" not in sent and sent["messages"][0]["content"] == [{"type": "text", "text": "hi"}]


@pytest.mark.parametrize(("model", "status", "retry_after"), [("fake-429", 429, 7.0), ("fake-500", 500, None)])
async def test_upstream_errors_keep_status_message_and_retry_after(
    fake: tuple[FakeOpenAI, str], client: AiohttpClient, model: str, status: int, retry_after: float | None
) -> None:
    with pytest.raises(UpstreamError) as err:
        await OpenAICompatible("openai", client, fake[1], KEY).complete(CHAT, model, {})
    assert (err.value.status, err.value.retry_after) == (status, retry_after)
    assert err.value.message


async def test_a_wrong_operator_key_is_reported_as_the_upstreams_401(
    fake: tuple[FakeOpenAI, str], client: AiohttpClient
) -> None:
    with pytest.raises(UpstreamError) as err:
        await OpenAICompatible("openai", client, fake[1], "sk-wrong").complete(CHAT, "gpt-4o-mini", {})
    assert err.value.status == 401 and "API key" in err.value.message


async def test_unreachable_upstream_is_502(client: AiohttpClient) -> None:
    provider = OpenAICompatible("openai", client, f"http://127.0.0.1:{free_port()}/v1", KEY)
    with pytest.raises(UpstreamError) as err:
        await provider.complete(CHAT, "gpt-4o-mini", {})
    assert err.value.status == 502


async def test_a_stream_that_breaks_midway_raises_after_the_chunks_it_sent(
    fake: tuple[FakeOpenAI, str], client: AiohttpClient
) -> None:
    received = []
    with pytest.raises(UpstreamError):
        async for chunk in OpenAICompatible("openai", client, fake[1], KEY).stream(
            CHAT, "fake-broken-stream", {}, StreamState()
        ):
            received.append(chunk)
    assert received  # the caller already got the first chunks before the break


def test_a_failed_tool_result_keeps_its_text_but_not_the_flag_openai_lacks(client: AiohttpClient) -> None:
    provider = OpenAICompatible("openai", client, "http://unused/v1", KEY)
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    messages = [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "timeout", "is_error": True},
    ]
    body = provider.wire_request(chat(messages=messages), "gpt-4o-mini", stream=False)
    sent = orjson.loads(encode_request(body))
    assert sent["messages"][2] == {"role": "tool", "tool_call_id": "call_1", "content": "timeout"}


async def test_the_calls_own_key_wins_over_the_operators(fake: tuple[FakeOpenAI, str], client: AiohttpClient) -> None:
    provider = OpenAICompatible("openai", client, fake[1], "sk-wrong-operator-key")
    result = await provider.complete(CHAT, "gpt-4o-mini", {"api_key": KEY})  # the fake accepts only KEY
    assert result.body.choices[0].message.content == "echo: hello world"
    chunks = [c async for c in provider.stream(CHAT, "gpt-4o-mini", {"api_key": KEY}, StreamState())]
    assert chunks[-1].choices == []
    with pytest.raises(UpstreamError) as refused:
        await provider.complete(CHAT, "gpt-4o-mini", {"api_key": ""})  # empty: the operator's key
    assert refused.value.status == 401


def _recording_client(seen: list[SentRequest]) -> MockUpstream:
    answer = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
    }

    def handle(request: SentRequest) -> MockResponse:
        seen.append(request)
        return MockResponse(200, json=answer)

    return MockUpstream(handle)


async def test_a_saved_base_url_and_key_replace_the_operators() -> None:
    seen: list[SentRequest] = []
    provider = OpenAICompatible("together", _recording_client(seen), "https://operator.example/v1/", "sk-operator")
    await provider.complete(CHAT, "m", {"api_key": "tgp-account", "base_url": "https://llm.example/v1/"})
    await provider.complete(CHAT, "m", {})
    assert [(str(r.url), r.headers["authorization"]) for r in seen] == [
        ("https://llm.example/v1/chat/completions", "Bearer tgp-account"),
        ("https://operator.example/v1/chat/completions", "Bearer sk-operator"),
    ]


async def test_without_a_key_anywhere_no_authorization_is_sent() -> None:
    seen: list[SentRequest] = []
    await OpenAICompatible("local", _recording_client(seen), "http://llm.local/v1", None).complete(CHAT, "m", {})
    assert "authorization" not in seen[0].headers


async def test_a_provider_without_any_base_url_is_a_clear_400() -> None:
    seen: list[SentRequest] = []
    provider = OpenAICompatible("mine", _recording_client(seen), "", None)
    with pytest.raises(OrqenError, match="mine provider has no base URL") as refused:
        await provider.complete(CHAT, "m", {"api_key": "k-1234"})
    assert refused.value.http_status == 400 and not seen


async def test_a_key_that_cannot_be_a_header_is_a_400_not_a_crash() -> None:
    seen: list[SentRequest] = []
    provider = OpenAICompatible("openai", _recording_client(seen), "https://api.example/v1", KEY)
    with pytest.raises(OrqenError, match="printable ASCII") as refused:
        await provider.complete(CHAT, "m", {"api_key": "sk-caf\u00e9"})
    assert refused.value.http_status == 400 and not seen
