"""The Anthropic Messages translator against a mock upstream that checks every body with the SDK's own types."""

from __future__ import annotations

import asyncio
import typing
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import orjson
import pytest
from anthropic.types import (
    ErrorResponse,
    InputJSONDelta,
    Message,
    MessageDeltaUsage,
    RawContentBlockDeltaEvent,
    RawContentBlockStartEvent,
    RawContentBlockStopEvent,
    RawMessageDeltaEvent,
    RawMessageStartEvent,
    RawMessageStopEvent,
    SignatureDelta,
    TextBlock,
    TextDelta,
    ThinkingBlock,
    ThinkingDelta,
    ToolUseBlock,
    Usage,
)
from anthropic.types import message_create_params as params
from anthropic.types.raw_message_delta_event import Delta
from msgspec.structs import replace
from pydantic import BaseModel, TypeAdapter, ValidationError

from orqen_common.errors import OrqenError
from orqen_common.formats.openai import ChatRequest, decode_request, encode
from orqen_dispatch.providers.anthropic import AnthropicMessages
from orqen_dispatch.providers.base import StreamState, UpstreamError
from orqen_testing.mock_upstream import MockResponse, MockUpstream, SentRequest

BASE_URL = "https://anthropic.test/"
KEY = "sk-ant-upstream"
MODEL = "claude-sonnet-4-5"
PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}

# --- the wire check: the anthropic SDK's request types --------------------------------

_ADAPTERS: dict[bool, TypeAdapter[Any]] = {
    False: TypeAdapter(params.MessageCreateParamsNonStreaming),
    True: TypeAdapter(params.MessageCreateParamsStreaming),
}
_KNOWN_FIELDS = set(typing.get_type_hints(params.MessageCreateParamsBase)) | {"stream"}
# The SDK dropped these from its signatures in 1.0, but the API still accepts them
# (MIGRATION.md: "pass them through extra_body"), so they are checked by hand.
_SAMPLING_FIELDS: dict[str, tuple[type, ...]] = {"temperature": (int, float), "top_p": (int, float), "top_k": (int,)}


def _materialize(value: Any) -> Any:
    """Consume pydantic's lazy Iterable validators so every nested item is really validated."""
    if isinstance(value, dict):
        return {k: _materialize(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, Iterator)):
        return [_materialize(v) for v in value]
    return value


def wire_problem(body: Any) -> str | None:
    """None when `body` is a Messages request the SDK's types accept; otherwise what is wrong."""
    if not isinstance(body, dict):
        return "body must be a JSON object"
    unknown = sorted(set(body) - _KNOWN_FIELDS - set(_SAMPLING_FIELDS))
    if unknown:
        return f"unknown fields: {', '.join(unknown)}"
    for name, types in _SAMPLING_FIELDS.items():
        if name in body and (isinstance(body[name], bool) or not isinstance(body[name], types)):
            return f"{name} must be a number"
    typed = {k: v for k, v in body.items() if k not in _SAMPLING_FIELDS}
    try:
        validated = _materialize(_ADAPTERS[body.get("stream") is True].validate_python(typed))
    except ValidationError as err:
        return str(err)
    # TypedDict validation drops keys it does not know, however deep: any difference is one.
    if validated != typed:
        return f"fields the SDK's types do not know (sent {typed}, the SDK kept {validated})"
    return None


class FakeAnthropic:
    """A mock upstream: checks each request, records it, answers from `reply`."""

    def __init__(self, reply: Callable[[dict[str, Any]], MockResponse]) -> None:
        self.reply = reply
        self.requests: list[SentRequest] = []
        self.bodies: list[dict[str, Any]] = []

    def handle(self, request: SentRequest) -> MockResponse:
        body = orjson.loads(request.content)
        problem = wire_problem(body)
        assert problem is None, problem
        assert str(request.url) == "https://anthropic.test/v1/messages"
        self.requests.append(request)
        self.bodies.append(body)
        return self.reply(body)

    def provider(self, api_key: str | None = KEY) -> AnthropicMessages:
        client = MockUpstream(self.handle)
        return AnthropicMessages("anthropic", client, BASE_URL, api_key, default_max_tokens=1024)


# --- upstream answers as real wire JSON ------------------------------------------------


def message(
    *content: BaseModel,
    stop_reason: str = "end_turn",
    stop_sequence: str | None = None,
    usage: Usage | None = None,
) -> dict[str, Any]:
    return Message(
        id="msg_01",
        type="message",
        role="assistant",
        model=MODEL,
        content=list(content),
        stop_reason=stop_reason,
        stop_sequence=stop_sequence,
        usage=usage or Usage(input_tokens=10, output_tokens=5),
    ).model_dump(mode="json")


def text_reply(text: str = "Hello!", **kw: Any) -> Callable[[dict[str, Any]], MockResponse]:
    return lambda _: MockResponse(200, json=message(TextBlock(type="text", text=text), **kw))


def sse(*events: BaseModel | dict[str, Any]) -> bytes:
    frames = []
    for event in events:
        payload = event.model_dump(mode="json") if isinstance(event, BaseModel) else event
        frames.append(f"event: {payload['type']}\ndata: {orjson.dumps(payload).decode()}\n\n")
    return "".join(frames).encode()


def sse_reply(body: bytes) -> Callable[[dict[str, Any]], MockResponse]:
    return lambda _: MockResponse(200, content=body, headers={"content-type": "text/event-stream"})


def message_start(input_tokens: int = 12, cache_read: int | None = None) -> RawMessageStartEvent:
    usage = Usage(input_tokens=input_tokens, output_tokens=1, cache_read_input_tokens=cache_read)
    return RawMessageStartEvent(
        type="message_start",
        message=Message(
            id="msg_stream",
            type="message",
            role="assistant",
            model=MODEL,
            content=[],
            stop_reason=None,
            stop_sequence=None,
            usage=usage,
        ),
    )


def text_start(index: int) -> RawContentBlockStartEvent:
    return RawContentBlockStartEvent(
        type="content_block_start", index=index, content_block=TextBlock(type="text", text="")
    )


def text_delta(index: int, text: str) -> RawContentBlockDeltaEvent:
    return RawContentBlockDeltaEvent(
        type="content_block_delta", index=index, delta=TextDelta(type="text_delta", text=text)
    )


def tool_start(index: int, call_id: str, name: str) -> RawContentBlockStartEvent:
    block = ToolUseBlock(type="tool_use", id=call_id, name=name, input={})
    return RawContentBlockStartEvent(type="content_block_start", index=index, content_block=block)


def json_delta(index: int, partial: str) -> RawContentBlockDeltaEvent:
    delta = InputJSONDelta(type="input_json_delta", partial_json=partial)
    return RawContentBlockDeltaEvent(type="content_block_delta", index=index, delta=delta)


def block_stop(index: int) -> RawContentBlockStopEvent:
    return RawContentBlockStopEvent(type="content_block_stop", index=index)


def message_delta(stop_reason: str, output_tokens: int, stop_sequence: str | None = None) -> RawMessageDeltaEvent:
    return RawMessageDeltaEvent(
        type="message_delta",
        delta=Delta(stop_reason=stop_reason, stop_sequence=stop_sequence),
        usage=MessageDeltaUsage(output_tokens=output_tokens),
    )


STOP = RawMessageStopEvent(type="message_stop")
PING = {"type": "ping"}


def error_body(kind: str, text: str) -> dict[str, Any]:
    return ErrorResponse.model_validate({"type": "error", "error": {"type": kind, "message": text}}).model_dump(
        mode="json", exclude_none=True
    )


def chat(*messages: dict[str, Any], **fields: Any) -> ChatRequest:
    """A canonical request, decoded from its JSON as dispatch receives it."""
    body = {"model": MODEL, "messages": list(messages) or [{"role": "user", "content": "Hi"}], **fields}
    return decode_request(orjson.dumps(body))


def as_json(answer: Any) -> Any:
    """A canonical answer or chunk as the JSON it goes on as."""
    return orjson.loads(encode(answer))


async def collect(provider: AnthropicMessages, request: ChatRequest, state: StreamState) -> list[dict[str, Any]]:
    return [as_json(c) async for c in provider.stream(replace(request, stream=True), MODEL, {}, state)]


# --- requests ---------------------------------------------------------------------------


async def test_system_messages_and_a_multi_turn_conversation() -> None:
    fake = FakeAnthropic(text_reply())
    request = chat(
        {"role": "system", "content": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}]},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello, how can I help?"},
        {"role": "developer", "content": "Answer in French."},
        {"role": "user", "content": [{"type": "text", "text": "What is 2+2?"}]},
        {"role": "user", "content": "Quickly."},
        user="user-42",
        seed=7,
        service_tier="auto",
        store=False,
        metadata={"team": "x"},
        prediction={"type": "content", "content": "4"},
        reasoning_effort="low",
        stream_options={"include_usage": True},
        parallel_tool_calls=True,
        n=1,
        response_format={"type": "text"},
        frequency_penalty=0,
        logit_bias={},
    )
    await fake.provider().complete(request, MODEL, {})

    body = fake.bodies[0]
    assert body["system"] == [
        {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "Answer in French."},
    ]
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Hello, how can I help?"}]},
        {
            "role": "user",
            "content": [{"type": "text", "text": "What is 2+2?"}, {"type": "text", "text": "Quickly."}],
        },
    ]
    assert body["model"] == MODEL and body["stream"] is False
    assert body["max_tokens"] == 1024  # the configured default: the API requires one
    assert body["metadata"] == {"user_id": "user-42"}
    headers = fake.requests[0].headers
    assert headers["x-api-key"] == KEY
    assert headers["anthropic-version"] == "2023-06-01"
    assert headers["content-type"] == "application/json"
    assert "anthropic-beta" not in headers


async def test_without_an_operator_key_no_x_api_key_is_sent() -> None:
    fake = FakeAnthropic(text_reply())
    await fake.provider(api_key=None).complete(chat(), MODEL, {})
    assert "x-api-key" not in fake.requests[0].headers


async def test_the_calls_own_key_wins_over_the_operators() -> None:
    fake = FakeAnthropic(text_reply())
    await fake.provider().complete(chat(), MODEL, {"api_key": "sk-ant-account"})
    await fake.provider(api_key=None).complete(chat(), MODEL, {"api_key": "sk-ant-caller"})
    await fake.provider().complete(chat(), MODEL, {"api_key": ""})  # empty: the operator's key
    assert [r.headers["x-api-key"] for r in fake.requests] == ["sk-ant-account", "sk-ant-caller", KEY]


async def test_a_streamed_call_sends_the_calls_own_key() -> None:
    fake = FakeAnthropic(sse_reply(sse(message_start(), message_delta("end_turn", 1), STOP)))
    credentials = {"api_key": "sk-ant-account"}
    chunks = [as_json(c) async for c in fake.provider().stream(chat(stream=True), MODEL, credentials, StreamState())]
    assert chunks[-1]["choices"] == []
    assert fake.requests[0].headers["x-api-key"] == "sk-ant-account"


async def test_a_key_that_cannot_be_a_header_is_a_400_not_a_crash() -> None:
    fake = FakeAnthropic(text_reply())
    with pytest.raises(OrqenError, match="printable ASCII") as refused:
        await fake.provider().complete(chat(), MODEL, {"api_key": "sk-ant-caf\u00e9"})
    assert refused.value.http_status == 400 and not fake.requests


async def test_anthropic_beta_is_forwarded_as_a_header() -> None:
    fake = FakeAnthropic(text_reply())
    betas = ["prompt-caching-2024-07-31", "interleaved-thinking-2025-05-14"]
    await fake.provider().complete(chat(anthropic_beta=betas), MODEL, {})
    assert fake.requests[0].headers["anthropic-beta"] == ",".join(betas)
    assert "anthropic_beta" not in fake.bodies[0]


async def test_sampling_stop_sequences_thinking_and_max_tokens() -> None:
    fake = FakeAnthropic(text_reply())
    provider = fake.provider()
    thinking = {"type": "enabled", "budget_tokens": 2048}
    await provider.complete(
        chat(temperature=0.3, top_p=0.9, top_k=40, stop="END", max_tokens=200, thinking=thinking), MODEL, {}
    )
    await provider.complete(chat(stop=["\n\n", "###"], max_tokens=200, max_completion_tokens=300), MODEL, {})

    first, second = fake.bodies
    assert (first["temperature"], first["top_p"], first["top_k"]) == (0.3, 0.9, 40)
    assert first["stop_sequences"] == ["END"] and first["max_tokens"] == 200
    assert first["thinking"] == thinking
    assert second["stop_sequences"] == ["\n\n", "###"] and second["max_tokens"] == 300
    assert not {"temperature", "top_p", "top_k", "thinking"} & set(second)


async def test_a_thinking_config_messages_does_not_know_is_a_400_before_sending() -> None:
    fake = FakeAnthropic(text_reply())
    with pytest.raises(OrqenError) as err:
        await fake.provider().complete(chat(thinking={"type": "enabled", "budget": 2048}), MODEL, {})
    assert err.value.http_status == 400 and "thinking" in err.value.message and "`budget`" in err.value.message
    assert not fake.requests


@pytest.mark.parametrize("schema", [{}, None])
async def test_a_tool_with_an_empty_or_null_schema_gets_an_empty_object_one(schema: Any) -> None:
    fake = FakeAnthropic(text_reply())
    await fake.provider().complete(
        chat(tools=[{"type": "function", "function": {"name": "now", "parameters": schema}}]), MODEL, {}
    )
    assert fake.bodies[0]["tools"] == [{"name": "now", "input_schema": {"type": "object", "properties": {}}}]


async def test_tools_keep_their_schema_and_cache_breakpoint() -> None:
    fake = FakeAnthropic(text_reply())
    bare = {"type": "function", "function": {"name": "now"}, "cache_control": {"type": "ephemeral"}}
    await fake.provider().complete(chat(tools=[WEATHER_TOOL, bare]), MODEL, {})
    assert fake.bodies[0]["tools"] == [
        {
            "name": "get_weather",
            "description": "Weather in a city",
            "input_schema": WEATHER_TOOL["function"]["parameters"],  # type: ignore[index]
        },
        {"name": "now", "input_schema": {"type": "object", "properties": {}}, "cache_control": {"type": "ephemeral"}},
    ]
    assert "tool_choice" not in fake.bodies[0]


@pytest.mark.parametrize(
    ("tool_choice", "parallel", "expected"),
    [
        ("auto", None, {"type": "auto"}),
        ("required", None, {"type": "any"}),
        ("none", None, {"type": "none"}),
        ({"type": "function", "function": {"name": "get_weather"}}, None, {"type": "tool", "name": "get_weather"}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            False,
            {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
        ),
        ("none", False, {"type": "none"}),
    ],
)
async def test_tool_choice(tool_choice: Any, parallel: bool | None, expected: dict[str, Any]) -> None:
    fake = FakeAnthropic(text_reply())
    fields: dict[str, Any] = {"tools": [WEATHER_TOOL]}
    if tool_choice is not None:
        fields["tool_choice"] = tool_choice
    if parallel is not None:
        fields["parallel_tool_calls"] = parallel
    await fake.provider().complete(chat(**fields), MODEL, {})
    assert fake.bodies[0]["tool_choice"] == expected


async def test_tool_choice_without_tools_is_left_out() -> None:
    fake = FakeAnthropic(text_reply())
    await fake.provider().complete(chat(tool_choice="auto", parallel_tool_calls=False), MODEL, {})
    assert "tool_choice" not in fake.bodies[0] and "tools" not in fake.bodies[0]


async def test_parallel_tool_calls_and_their_results_become_one_user_turn() -> None:
    fake = FakeAnthropic(text_reply("Paris is sunny, Oslo is cold."))
    calls = [
        {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
        {"id": "toolu_2", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}},
    ]
    request = chat(
        {"role": "user", "content": "Weather in Paris and Oslo?"},
        {"role": "assistant", "content": "Let me check.", "tool_calls": calls},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": [{"type": "text", "text": "cold"}], "is_error": True},
        {"role": "user", "content": "Thanks, summarise."},
        tools=[WEATHER_TOOL],
    )
    await fake.provider().complete(request, MODEL, {})
    assert fake.bodies[0]["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris and Oslo?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Oslo"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_2",
                    "content": [{"type": "text", "text": "cold"}],
                    "is_error": True,
                },
                {"type": "text", "text": "Thanks, summarise."},
            ],
        },
    ]


async def test_tool_results_come_first_even_after_a_user_message() -> None:
    fake = FakeAnthropic(text_reply())
    call = {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
    request = chat(
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "user", "content": "Also, hurry."},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
    )
    await fake.provider().complete(request, MODEL, {})
    last = fake.bodies[0]["messages"][-1]
    assert [b["type"] for b in last["content"]] == ["tool_result", "text"]
    assert fake.bodies[0]["messages"][1]["content"] == [
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}
    ]


async def test_an_empty_assistant_message_is_skipped() -> None:
    fake = FakeAnthropic(text_reply())
    request = chat(
        {"role": "user", "content": "One"},
        {"role": "assistant", "content": ""},
        {"role": "user", "content": "Two"},
    )
    await fake.provider().complete(request, MODEL, {})
    assert fake.bodies[0]["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "One"}, {"type": "text", "text": "Two"}]}
    ]


async def test_images_as_base64_and_as_urls() -> None:
    fake = FakeAnthropic(text_reply("Two pixels."))
    content = [
        {"type": "text", "text": "Compare these."},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
        {
            "type": "image_url",
            "image_url": {"url": "https://example.com/cat.jpg", "detail": "high"},
            "cache_control": {"type": "ephemeral"},
        },
    ]
    await fake.provider().complete(chat({"role": "user", "content": content}), MODEL, {})
    assert fake.bodies[0]["messages"][0]["content"] == [
        {"type": "text", "text": "Compare these."},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}},
        {
            "type": "image",
            "source": {"type": "url", "url": "https://example.com/cat.jpg"},
            "cache_control": {"type": "ephemeral"},
        },
    ]


@pytest.mark.parametrize(
    ("fields", "feature"),
    [
        ({"n": 2}, "n > 1"),
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 3}, "logprobs"),
        ({"response_format": {"type": "json_object"}}, "response_format 'json_object'"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}, "response_format 'json_schema'"),
        ({"audio": {"voice": "alloy", "format": "wav"}}, "Audio output"),
        ({"modalities": ["text", "audio"]}, "Audio output"),
        ({"frequency_penalty": 0.5}, "frequency_penalty"),
        ({"presence_penalty": -1}, "presence_penalty"),
        ({"logit_bias": {"50256": -100}}, "logit_bias"),
        ({"functions": [{"name": "f"}]}, "Legacy functions"),
    ],
)
async def test_features_messages_cannot_express_are_400_naming_them(fields: dict[str, Any], feature: str) -> None:
    fake = FakeAnthropic(text_reply())
    with pytest.raises(OrqenError) as err:
        await fake.provider().complete(chat(**fields), MODEL, {})
    assert err.value.http_status == 400
    assert feature in err.value.message and "the Anthropic Messages API" in err.value.message
    assert not fake.requests


@pytest.mark.parametrize(
    ("fields", "feature"),
    [
        (
            {
                "tool_choice": {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": []}},
                "tools": [WEATHER_TOOL],
            },
            "tool_choice 'allowed_tools'",
        ),
        ({"tools": [{"type": "custom", "custom": {"name": "grammar"}}]}, "Custom (free-form) tools"),
    ],
)
async def test_openais_own_tool_kinds_are_400s_naming_them(fields: dict[str, Any], feature: str) -> None:
    fake = FakeAnthropic(text_reply())
    with pytest.raises(OrqenError) as err:
        await fake.provider().complete(chat(**fields), MODEL, {})
    assert err.value.http_status == 400 and feature in err.value.message and not fake.requests


@pytest.mark.parametrize(
    ("messages", "fragment"),
    [
        (
            [
                {"role": "user", "content": "Hi"},
                {
                    "role": "assistant",
                    "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "lookup", "arguments": "{x"}}],
                },
            ],
            "'lookup'",
        ),
        ([{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}], "'input_audio'"),
        ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}]}], "image URL"),
        (
            [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,@@"}}]}],
            "base64",
        ),
        (
            [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/bmp;base64,AAAA"}}]}],
            "image/bmp",
        ),
        # These four are refused where dispatch decodes the canonical request.
        ([{"role": "tool", "content": "orphan"}], "tool_call_id"),
        ([{"role": "critic", "content": "x"}], "Invalid value 'critic' - at `$.messages[0].role`"),
        ([{"role": "user", "content": 42}], "Expected `str | array`, got `int` - at `$.messages[0].content`"),
        (["hello"], "Expected `object`, got `str` - at `$.messages[0]`"),
        ([{"role": "user", "content": ""}], "no content"),
        ([], "non-empty list"),
    ],
)
async def test_malformed_requests_are_clear_400s(messages: list[Any], fragment: str) -> None:
    fake = FakeAnthropic(text_reply())
    with pytest.raises(OrqenError) as err:
        await fake.provider().complete(decode_request(orjson.dumps({"model": MODEL, "messages": messages})), MODEL, {})
    assert err.value.http_status == 400 and fragment in err.value.message
    assert not fake.requests


# --- answers ----------------------------------------------------------------------------


async def test_text_tool_use_and_cache_read_usage_become_a_canonical_completion() -> None:
    answer = message(
        ThinkingBlock(type="thinking", thinking="Need the weather.", signature="sig"),
        TextBlock(type="text", text="Checking "),
        TextBlock(type="text", text="both."),
        ToolUseBlock(type="tool_use", id="toolu_1", name="get_weather", input={"city": "Paris"}),
        ToolUseBlock(type="tool_use", id="toolu_2", name="get_weather", input={"city": "Oslo"}),
        stop_reason="tool_use",
        usage=Usage(input_tokens=20, output_tokens=30, cache_read_input_tokens=100, cache_creation_input_tokens=8),
    )
    fake = FakeAnthropic(lambda _: MockResponse(200, json=answer))
    result = await fake.provider().complete(chat(tools=[WEATHER_TOOL]), MODEL, {})

    body = as_json(result.body)
    assert body["id"] == "msg_01" and body["object"] == "chat.completion" and body["model"] == MODEL
    assert isinstance(body["created"], int)
    (choice,) = body["choices"]
    assert choice["finish_reason"] == "tool_calls" and "stop_sequence" not in choice
    assert choice["message"] == {
        "role": "assistant",
        "content": "Checking both.",
        "tool_calls": [
            {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
            {"id": "toolu_2", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}},
        ],
    }
    assert body["usage"] == {
        "prompt_tokens": 128,
        "completion_tokens": 30,
        "total_tokens": 158,
        "prompt_tokens_details": {"cached_tokens": 100, "cache_creation_tokens": 8},
    }
    usage = result.usage
    assert (usage.input, usage.output, usage.cache_read, usage.cache_write) == (20, 30, 100, 8)
    assert result.status == 200


async def test_blocks_of_types_added_later_are_left_out_of_an_answer() -> None:
    answer = message(TextBlock(type="text", text="Found it."))
    answer["content"] = [
        {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "x"}},
        {"type": "a_block_type_from_next_year", "payload": [1]},
        *answer["content"],
    ]
    fake = FakeAnthropic(lambda _: MockResponse(200, json=answer))
    result = await fake.provider().complete(chat(), MODEL, {})
    assert as_json(result.body)["choices"][0]["message"] == {"role": "assistant", "content": "Found it."}


async def test_an_answer_that_is_not_a_message_is_a_502() -> None:
    answer = message(TextBlock(type="text", text="hi"))
    del answer["usage"]
    fake = FakeAnthropic(lambda _: MockResponse(200, json=answer))
    with pytest.raises(UpstreamError) as err:
        await fake.provider().complete(chat(), MODEL, {})
    assert err.value.status == 502 and "usage" in err.value.message


async def test_a_tool_only_answer_has_no_content() -> None:
    answer = message(ToolUseBlock(type="tool_use", id="toolu_1", name="now", input={}), stop_reason="tool_use")
    fake = FakeAnthropic(lambda _: MockResponse(200, json=answer))
    result = await fake.provider().complete(chat(), MODEL, {})
    reply = as_json(result.body)["choices"][0]["message"]
    assert reply["content"] is None and reply["tool_calls"][0]["function"]["arguments"] == "{}"


async def test_the_stop_sequence_that_ended_generation_is_reported() -> None:
    fake = FakeAnthropic(text_reply("1, 2, 3", stop_reason="stop_sequence", stop_sequence="4"))
    result = await fake.provider().complete(chat(stop=["4"]), MODEL, {})
    (choice,) = as_json(result.body)["choices"]
    assert choice["finish_reason"] == "stop" and choice["stop_sequence"] == "4"
    assert fake.bodies[0]["stop_sequences"] == ["4"]


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
        ("model_context_window_exceeded", "length"),
    ],
)
async def test_finish_reasons(stop_reason: str, finish: str) -> None:
    fake = FakeAnthropic(text_reply(stop_reason=stop_reason))
    result = await fake.provider().complete(chat(), MODEL, {})
    assert as_json(result.body)["choices"][0]["finish_reason"] == finish


async def test_an_upstream_429_keeps_status_message_and_retry_after() -> None:
    fake = FakeAnthropic(
        lambda _: MockResponse(
            429, json=error_body("rate_limit_error", "Number of request tokens exceeded"), headers={"retry-after": "7"}
        )
    )
    with pytest.raises(UpstreamError) as err:
        await fake.provider().complete(chat(), MODEL, {})
    assert (err.value.status, err.value.retry_after) == (429, 7.0)
    assert err.value.message == "Number of request tokens exceeded"


async def test_an_upstream_error_before_a_stream_starts_is_raised_too() -> None:
    fake = FakeAnthropic(lambda _: MockResponse(529, json=error_body("overloaded_error", "Overloaded")))
    with pytest.raises(UpstreamError) as err:
        await collect(fake.provider(), chat(), StreamState())
    assert (err.value.status, err.value.message) == (529, "Overloaded")


# --- streams ----------------------------------------------------------------------------


def deltas(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c["choices"][0]["delta"] for c in chunks if c["choices"]]


async def test_a_streamed_text_answer() -> None:
    body = sse(
        message_start(input_tokens=12, cache_read=30),
        PING,
        text_start(0),
        text_delta(0, "Hel"),
        text_delta(0, "lo!"),
        block_stop(0),
        message_delta("end_turn", output_tokens=4),
        STOP,
    )
    fake = FakeAnthropic(sse_reply(body))
    state = StreamState()
    chunks = await collect(fake.provider(), chat(), state)

    assert fake.bodies[0]["stream"] is True
    assert deltas(chunks) == [{"role": "assistant", "content": ""}, {"content": "Hel"}, {"content": "lo!"}, {}]
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]] == [None, None, None, "stop"]
    assert all(c["id"] == "msg_stream" and c["model"] == MODEL for c in chunks)
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == {
        "prompt_tokens": 42,
        "completion_tokens": 4,
        "total_tokens": 46,
        "prompt_tokens_details": {"cached_tokens": 30},
    }
    assert (state.usage.input, state.usage.output, state.usage.cache_read) == (12, 4, 30)
    assert state.status == 200


async def test_two_streamed_tool_calls_reassemble_in_order() -> None:
    body = sse(
        message_start(),
        RawContentBlockStartEvent(
            type="content_block_start", index=0, content_block=ThinkingBlock(type="thinking", thinking="", signature="")
        ),
        RawContentBlockDeltaEvent(
            type="content_block_delta", index=0, delta=ThinkingDelta(type="thinking_delta", thinking="Two cities.")
        ),
        RawContentBlockDeltaEvent(
            type="content_block_delta", index=0, delta=SignatureDelta(type="signature_delta", signature="sig")
        ),
        block_stop(0),
        text_start(1),
        text_delta(1, "Checking."),
        block_stop(1),
        tool_start(2, "toolu_a", "get_weather"),
        json_delta(2, ""),
        json_delta(2, '{"ci'),
        json_delta(2, 'ty": "Par'),
        json_delta(2, 'is"}'),
        block_stop(2),
        tool_start(3, "toolu_b", "get_weather"),
        json_delta(3, '{"city":'),
        json_delta(3, ' "Oslo"}'),
        block_stop(3),
        tool_start(4, "toolu_c", "now"),
        block_stop(4),
        message_delta("tool_use", output_tokens=57),
        STOP,
    )
    fake = FakeAnthropic(sse_reply(body))
    chunks = await collect(fake.provider(), chat(tools=[WEATHER_TOOL]), StreamState())

    calls: dict[int, dict[str, Any]] = {}
    text = ""
    for delta in deltas(chunks):
        text += delta.get("content") or ""
        for call in delta.get("tool_calls", ()):
            if "id" in call:
                assert call["index"] not in calls and call["type"] == "function"
                assert call["function"]["arguments"] == ""
                calls[call["index"]] = {"id": call["id"], "name": call["function"]["name"], "arguments": ""}
            calls[call["index"]]["arguments"] += call["function"]["arguments"]
    assert text == "Checking."
    assert calls == {
        0: {"id": "toolu_a", "name": "get_weather", "arguments": '{"city": "Paris"}'},
        1: {"id": "toolu_b", "name": "get_weather", "arguments": '{"city": "Oslo"}'},
        2: {"id": "toolu_c", "name": "now", "arguments": "{}"},
    }
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finishes[-1] == "tool_calls" and set(finishes[:-1]) == {None}
    assert chunks[-1]["usage"]["completion_tokens"] == 57


async def test_a_streamed_stop_sequence_and_final_usage_counts_win() -> None:
    final = RawMessageDeltaEvent(
        type="message_delta",
        delta=Delta(stop_reason="stop_sequence", stop_sequence="###"),
        usage=MessageDeltaUsage(output_tokens=9, input_tokens=15, cache_read_input_tokens=5),
    )
    body = sse(message_start(input_tokens=12), text_start(0), text_delta(0, "a"), block_stop(0), final, STOP)
    fake = FakeAnthropic(sse_reply(body))
    state = StreamState()
    chunks = await collect(fake.provider(), chat(stop="###"), state)
    finish = chunks[-2]["choices"][0]
    assert finish["finish_reason"] == "stop" and finish["stop_sequence"] == "###"
    assert chunks[-1]["usage"]["prompt_tokens"] == 20 and chunks[-1]["usage"]["completion_tokens"] == 9
    assert (state.usage.input, state.usage.cache_read) == (15, 5)


@pytest.mark.parametrize(
    ("error_type", "status"),
    [
        ("overloaded_error", 529),
        ("rate_limit_error", 429),
        ("api_error", 500),
        ("invalid_request_error", 400),
        ("authentication_error", 401),
        ("permission_error", 403),
        ("not_found_error", 404),
        ("request_too_large", 413),
        ("something_new", 502),
    ],
)
async def test_an_error_event_mid_stream_is_an_upstream_error(error_type: str, status: int) -> None:
    error = {"type": "error", "error": {"type": error_type, "message": "Overloaded"}}
    body = sse(message_start(), text_start(0), text_delta(0, "Par"), error)
    fake = FakeAnthropic(sse_reply(body))
    state = StreamState()
    seen: list[dict[str, Any]] = []
    with pytest.raises(UpstreamError) as err:
        async for chunk in fake.provider().stream(replace(chat(), stream=True), MODEL, {}, state):
            seen.append(as_json(chunk))
    assert err.value.status == status and "Overloaded" in err.value.message
    assert deltas(seen)[-1] == {"content": "Par"}  # what came before the error was already passed on
    assert state.status == status


async def test_events_blocks_and_deltas_of_types_added_later_are_skipped() -> None:
    body = sse(
        message_start(),
        {"type": "an_event_from_next_year", "index": 0},
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "server_tool_use", "id": "s", "name": "x"},
        },
        {"type": "content_block_delta", "index": 0, "delta": {"type": "a_delta_from_next_year", "data": "?"}},
        block_stop(0),
        text_start(1),
        text_delta(1, "ok"),
        {"type": "content_block_delta", "index": 1, "delta": {"type": "citations_delta", "citation": {}}},
        block_stop(1),
        message_delta("end_turn", output_tokens=2),
        STOP,
    )
    fake = FakeAnthropic(sse_reply(body))
    chunks = await collect(fake.provider(), chat(), StreamState())
    assert deltas(chunks) == [{"role": "assistant", "content": ""}, {"content": "ok"}, {}]


async def test_an_event_that_does_not_fit_its_type_is_a_502() -> None:
    body = sse(message_start(), {"type": "content_block_delta", "index": "zero", "delta": {"type": "text_delta"}})
    fake = FakeAnthropic(sse_reply(body))
    with pytest.raises(UpstreamError) as err:
        await collect(fake.provider(), chat(), StreamState())
    assert err.value.status == 502 and "$.index" in err.value.message


async def test_a_stream_that_ends_without_message_stop_is_a_502() -> None:
    body = sse(message_start(), text_start(0), text_delta(0, "cut"))
    fake = FakeAnthropic(sse_reply(body))
    with pytest.raises(UpstreamError) as err:
        await collect(fake.provider(), chat(), StreamState())
    assert err.value.status == 502 and "ended early" in err.value.message


class _GatedStream:
    """An SSE body that sends its first part, then waits for the test to let the rest through."""

    def __init__(self, first: bytes, rest: bytes) -> None:
        self.first, self.rest = first, rest
        self.gate = asyncio.Event()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.first
        await self.gate.wait()
        yield self.rest


async def test_chunks_are_yielded_as_events_arrive() -> None:
    body = _GatedStream(
        sse(message_start(), text_start(0), text_delta(0, "early")),
        sse(block_stop(0), message_delta("end_turn", output_tokens=1), STOP),
    )
    fake = FakeAnthropic(lambda _: MockResponse(200, content=body, headers={"content-type": "text/event-stream"}))
    stream = fake.provider().stream(replace(chat(), stream=True), MODEL, {}, StreamState())
    assert not body.gate.is_set()
    # A generous guard only turns a buffering translator's deadlock into a failure.
    async with asyncio.timeout(10):
        assert deltas([as_json(await anext(stream))]) == [{"role": "assistant", "content": ""}]
        assert deltas([as_json(await anext(stream))]) == [{"content": "early"}]  # before the rest of the body exists
    body.gate.set()
    rest = [as_json(c) async for c in stream]
    assert rest[-1]["choices"] == [] and rest[-1]["usage"]["completion_tokens"] == 1


# --- the wire check itself ------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"model": MODEL, "max_tokens": 1, "messages": [], "temprature": 1},
        {
            "model": MODEL,
            "max_tokens": 1,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "a", "x": 1}]}],
        },
        {
            "model": MODEL,
            "max_tokens": 1,
            "messages": [],
            "tool_choice": {"type": "none", "disable_parallel_tool_use": True},
        },
        {"model": MODEL, "max_tokens": 1, "messages": [], "temperature": "hot"},
        {"model": MODEL, "messages": []},
    ],
)
def test_the_wire_check_catches_what_the_api_would_reject(body: dict[str, Any]) -> None:
    assert wire_problem(body) is not None
