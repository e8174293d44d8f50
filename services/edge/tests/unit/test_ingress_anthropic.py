"""The Anthropic ingress, checked against the official SDK's own types and stream accumulator."""

from collections.abc import AsyncIterator, Iterable
from typing import Any

import httpx2
import msgspec
import orjson
import pytest
from anthropic import APIStatusError, AsyncAnthropic
from anthropic._streaming import ServerSentEvent, SSEDecoder
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import (
    Message,
    MessageParam,
    RawMessageStreamEvent,
    TextBlock,
    ToolParam,
    ToolUseBlock,
)
from anthropic.types.message_create_params import MessageCreateParamsNonStreaming
from pydantic import TypeAdapter

from orqen_common.errors import OrqenError, unavailable
from orqen_common.formats.openai import ChatCompletion, ChatCompletionChunk, encode_request
from orqen_edge.ingress.anthropic import AnthropicReply, translate

PNG = "iVBORw0KGgo="  # the PNG signature, base64
WEATHER: ToolParam = {
    "name": "get_weather",
    "description": "Current weather for a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
USAGE = {
    "prompt_tokens": 42,
    "completion_tokens": 7,
    "total_tokens": 49,
    "prompt_tokens_details": {"cached_tokens": 10},
}
EVENT = TypeAdapter[Any](RawMessageStreamEvent)
HI: MessageParam = {"role": "user", "content": "hi"}


def request(*messages: MessageParam, **fields: Any) -> dict[str, Any]:
    params: MessageCreateParamsNonStreaming = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 256,
        "messages": list(messages),
    }
    return {**params, **fields}


def malformed(message: Any) -> dict[str, Any]:
    """A request whose one message the SDK's types would not allow."""
    return {"model": "claude-sonnet-4-6", "max_tokens": 256, "messages": [message]}


def translated(body: Any, beta: str = "") -> tuple[dict[str, Any], AnthropicReply]:
    """The canonical request for `body` as JSON, and the reply."""
    chat, reply = translate(orjson.dumps(body), beta)
    return orjson.loads(encode_request(chat)), reply


def rejection(body: Any, beta: str = "") -> str:
    with pytest.raises(OrqenError) as err:
        translate(orjson.dumps(body), beta)
    assert err.value.http_status == 400
    assert err.value.kind.anthropic_type == "invalid_request_error"
    return err.value.message


# ---------------------------------------------------------------------------------------
# Request translation


def test_a_plain_request_becomes_canonical_with_every_sampling_field() -> None:
    body = request(
        {"role": "user", "content": "Hello"},
        system="Be brief.",
        temperature=0.2,
        top_p=0.9,
        top_k=40,
        stop_sequences=["END", "STOP"],
        metadata={"user_id": "user-7"},
        thinking={"type": "enabled", "budget_tokens": 2048},
        stream=True,
        aws_region_name="eu-west-1",
        service_tier="auto",
    )
    chat, reply = translated(body, "prompt-caching-2024-07-31, fine-grained-tool-streaming-2025-05-14")
    assert chat == {
        "model": "claude-sonnet-4-6",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}],
        "max_tokens": 256,
        "stream": True,
        "temperature": 0.2,
        "top_p": 0.9,
        "top_k": 40,
        "stop": ["END", "STOP"],
        "user": "user-7",
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "anthropic_beta": ["prompt-caching-2024-07-31", "fine-grained-tool-streaming-2025-05-14"],
        "aws_region_name": "eu-west-1",
    }
    assert reply.stream_media_type == "text/event-stream"


def test_hints_are_ignored_and_disabled_thinking_is_no_thinking() -> None:
    chat, _ = translated(
        request(
            {"role": "user", "content": "hi"},
            thinking={"type": "disabled"},
            container="container_1",
            context_management={"edits": []},
            speed="fast",
            inference_geo="us",
            output_config={"effort": "low"},
            metadata={"user_id": ""},
        )
    )
    assert chat == {
        "model": "claude-sonnet-4-6",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 256,
        "stream": False,
    }


def test_system_blocks_are_joined_unless_they_carry_cache_breakpoints() -> None:
    joined, _ = translated(
        request(
            {"role": "user", "content": "hi"}, system=[{"type": "text", "text": "A"}, {"type": "text", "text": "B"}]
        )
    )
    assert joined["messages"][0] == {"role": "system", "content": "A\nB"}

    cached_system = [
        {"type": "text", "text": "A"},
        {"type": "text", "text": "B", "cache_control": {"type": "ephemeral"}},
    ]
    cached, _ = translated(request({"role": "user", "content": "hi"}, system=cached_system))
    assert cached["messages"][0] == {
        "role": "system",
        "content": [
            {"type": "text", "text": "A"},
            {"type": "text", "text": "B", "cache_control": {"type": "ephemeral"}},
        ],
    }


def test_images_become_image_url_parts() -> None:
    chat, _ = translated(
        request(
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Compare these."},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                    {
                        "type": "image",
                        "source": {"type": "url", "url": "https://example.com/cat.jpg"},
                        "cache_control": {"type": "ephemeral"},
                    },
                ],
            }
        )
    )
    assert chat["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Compare these."},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                {
                    "type": "image_url",
                    "image_url": {"url": "https://example.com/cat.jpg"},
                    "cache_control": {"type": "ephemeral"},
                },
            ],
        }
    ]


def test_a_tool_round_trip_becomes_tool_calls_then_tool_messages_before_the_users_text() -> None:
    chat, _ = translated(
        request(
            {"role": "user", "content": "Weather in Paris and Oslo?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "Two cities.", "signature": "sig"},
                    {"type": "redacted_thinking", "data": "opaque"},
                    {"type": "text", "text": "Let me check."},
                    {"type": "tool_use", "id": "toolu_0", "name": "get_weather", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_0", "content": "18C"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "is_error": True,
                        "content": [{"type": "text", "text": "Oslo: "}, {"type": "text", "text": "timeout"}],
                    },
                    {"type": "text", "text": "Summarise."},
                ],
            },
            tools=[WEATHER],
        )
    )
    assert chat["messages"] == [
        {"role": "user", "content": "Weather in Paris and Oslo?"},
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "Let me check."}],
            "tool_calls": [
                {
                    "id": "toolu_0",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_0", "content": "18C"},
        {
            "role": "tool",
            "tool_call_id": "toolu_1",
            "content": [{"type": "text", "text": "Oslo: "}, {"type": "text", "text": "timeout"}],
            "is_error": True,
        },
        {"role": "user", "content": [{"type": "text", "text": "Summarise."}]},
    ]


def test_a_turn_of_only_tool_results_has_no_user_message_and_keeps_its_cache_breakpoint() -> None:
    chat, _ = translated(
        request(
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t0", "name": "get_weather", "input": {}}]},
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "t0",
                        "content": "ok",
                        "cache_control": {"type": "ephemeral"},
                    }
                ],
            },
            tools=[WEATHER],
        )
    )
    assert chat["messages"][1:] == [
        {  # no content: absent and null are the same in a canonical request
            "role": "assistant",
            "tool_calls": [{"id": "t0", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}],
        },
        {
            "role": "tool",
            "tool_call_id": "t0",
            "content": [{"type": "text", "text": "ok", "cache_control": {"type": "ephemeral"}}],
        },
    ]


def test_tools_and_each_tool_choice() -> None:
    cached_tool: ToolParam = {**WEATHER, "cache_control": {"type": "ephemeral"}, "strict": True}
    chat, _ = translated(
        request(
            {"role": "user", "content": "hi"},
            tools=[cached_tool],
            tool_choice={"type": "any", "disable_parallel_tool_use": True},
        )
    )
    assert chat["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": WEATHER["input_schema"],
                "description": "Current weather for a city.",
                "strict": True,
            },
            "cache_control": {"type": "ephemeral"},
        }
    ]
    assert chat["tool_choice"] == "required" and chat["parallel_tool_calls"] is False

    choices = {
        "auto": "auto",
        "none": "none",
        "tool": {"type": "function", "function": {"name": "get_weather"}},
    }
    for choice_type, expected in choices.items():
        choice = {"type": choice_type, "name": "get_weather"} if choice_type == "tool" else {"type": choice_type}
        chat, _ = translated(request({"role": "user", "content": "hi"}, tools=[WEATHER], tool_choice=choice))
        assert chat["tool_choice"] == expected
        assert "parallel_tool_calls" not in chat


def test_orqen_tool_examples_reach_the_canonical_tool_for_routing() -> None:
    tool = {**WEATHER, "x-orqen-examples": ["weather in Rome?"]}
    chat, _ = translated(request({"role": "user", "content": "hi"}, tools=[tool]))
    assert chat["tools"][0]["function"]["x-orqen-examples"] == ["weather in Rome?"]


def test_tool_choice_without_tools() -> None:
    chat, _ = translated(request({"role": "user", "content": "hi"}, tool_choice={"type": "auto"}))
    assert "tool_choice" not in chat and "tools" not in chat
    assert rejection(request({"role": "user", "content": "hi"}, tool_choice={"type": "any"})) == (
        "The request body is not valid: 'any' requires 'tools' - at `$.tool_choice`."
    )


def test_top_level_cache_control_marks_the_last_block() -> None:
    chat, _ = translated(
        request({"role": "user", "content": "a long document"}, cache_control={"type": "ephemeral", "ttl": "1h"})
    )
    assert chat["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "a long document", "cache_control": {"type": "ephemeral", "ttl": "1h"}}
            ],
        }
    ]


def test_system_turns_inside_messages_stay_in_place() -> None:
    chat, _ = translated(
        request(
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "system", "content": "Answer in French from now on."},
            {"role": "user", "content": "bye"},
        )
    )
    assert [m["role"] for m in chat["messages"]] == ["user", "assistant", "system", "user"]
    assert chat["messages"][2]["content"] == "Answer in French from now on."


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (
            request(
                {
                    "role": "user",
                    "content": [
                        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "x"}}
                    ],
                }
            ),
            "Anthropic 'document' content blocks",
        ),
        (
            request(
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "search_result",
                            "source": "https://example.com",
                            "title": "t",
                            "content": [{"type": "text", "text": "x"}],
                        }
                    ],
                }
            ),
            "Anthropic 'search_result' content blocks",
        ),
        (
            request(
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "t0",
                            "content": [
                                {
                                    "type": "image",
                                    "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                                }
                            ],
                        }
                    ],
                }
            ),
            "An image inside an Anthropic tool result",
        ),
        (
            request(
                {
                    "role": "assistant",
                    "content": [{"type": "server_tool_use", "id": "srv_0", "name": "web_search", "input": {}}],
                }
            ),
            "Anthropic 'server_tool_use' content blocks",
        ),
        (
            request({"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "file_1"}}]}),
            "'file' source",
        ),
        (
            request(
                {"role": "user", "content": "hi"},
                tools=[{"type": "web_search_20250305", "name": "web_search", "max_uses": 3}],
            ),
            "server tool 'web_search_20250305'",
        ),
        (
            request({"role": "user", "content": "hi"}, tools=[{"type": "bash_20250124", "name": "bash"}]),
            "server tool 'bash_20250124'",
        ),
        (
            request(
                {"role": "user", "content": "hi"},
                mcp_servers=[{"type": "url", "url": "https://mcp.example.com", "name": "x"}],
            ),
            "'mcp_servers'",
        ),
        (
            request(
                {"role": "user", "content": "hi"},
                output_config={"format": {"type": "json_schema", "schema": {"type": "object"}}},
            ),
            "'output_config.format'",
        ),
    ],
)
def test_features_the_canonical_format_cannot_carry_are_400s_naming_them(body: dict[str, Any], named: str) -> None:
    message = rejection(body)
    assert named in message and "is not supported by Orqen's canonical format" in message


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "Expected `object`, got `array`"),
        (
            request(HI, anthropic_version="2023-06-01"),
            "Object contains unknown field `anthropic_version`",
        ),
        ({"max_tokens": 5, "messages": [HI]}, "Object missing required field `model`"),
        ({"model": "m", "messages": [HI]}, "Object missing required field `max_tokens`"),
        (request(HI, max_tokens="5"), "Expected `int`, got `str` - at `$.max_tokens`"),
        (request(HI, max_tokens=True), "Expected `int`, got `bool` - at `$.max_tokens`"),
        ({"model": "m", "max_tokens": 5, "messages": []}, "Expected `array` of length >= 1 - at `$.messages`"),
        (malformed({"role": "tool", "content": "hi"}), "Invalid value 'tool' - at `$.messages[0].role`"),
        (malformed({"role": "user", "content": 5}), "Expected `str | array`, got `int` - at `$.messages[0].content`"),
        (request({"role": "user", "content": []}), "Expected `array` of length >= 1 - at `$.messages[0].content`"),
        (
            malformed({"role": "user", "content": [{"text": "x"}]}),
            "Object missing required field `type` - at `$.messages[0].content[0]`",
        ),
        (
            malformed({"role": "user", "content": [{"type": "text"}]}),
            "Object missing required field `text` - at `$.messages[0].content[0]`",
        ),
        (
            request(
                {
                    "role": "user",
                    "content": [
                        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "@"}}
                    ],
                }
            ),
            "Invalid base64 data - at `$.messages[0].content[0].source.data`",
        ),
        (
            malformed({"role": "user", "content": [{"type": "tool_result", "content": "x"}]}),
            "Object missing required field `tool_use_id` - at `$.messages[0].content[0]`",
        ),
        (
            malformed({"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": [1]}]}),
            "Expected `object | null`, got `array` - at `$.messages[0].content[0].input`",
        ),
        (
            request(HI, system=5),
            "Expected `str | array | null`, got `int` - at `$.system`",
        ),
        (
            request(HI, temperature="hot"),
            "Expected `float | null`, got `str` - at `$.temperature`",
        ),
        (
            request(HI, stop_sequences="END"),
            "Expected `array | null`, got `str` - at `$.stop_sequences`",
        ),
        (
            request(HI, tools=[{"name": "f"}]),
            "Object missing required field `input_schema` - at `$.tools[0]`",
        ),
        (
            request(HI, tools=[{"name": "f", "input_schema": None}]),
            "Object missing required field `input_schema` - at `$.tools[0]`",
        ),
        (
            request(HI, tools=[{"name": "f", "input_schema": {}}, {"name": "g", "input_schema": ["x"]}]),
            "Expected `object | null`, got `array` - at `$.tools[1].input_schema`",
        ),
        (
            request(HI, tools=[{"name": "f", "type": "custom", "input_schema": "{}"}]),
            "Expected `object | null`, got `str` - at `$.tools[0].input_schema`",
        ),
        (
            request(HI, tool_choice={"type": "maybe"}),
            "Invalid value 'maybe' - at `$.tool_choice.type`",
        ),
        (
            request(HI, thinking={"budget_tokens": 5}),
            "Object missing required field `type` - at `$.thinking`",
        ),
        (
            request(HI, metadata={"user_id": 5}),
            "Expected `str | null`, got `int` - at `$.metadata.user_id`",
        ),
    ],
)
def test_malformed_requests_are_400s_naming_the_field(body: Any, message: str) -> None:
    assert rejection(body) == f"The request body is not valid: {message}."


# ---------------------------------------------------------------------------------------
# Non-streaming reply


def completion(message: dict[str, Any], finish: str, **choice: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-abc",
        "object": "chat.completion",
        "created": 1,
        "model": "claude-sonnet-4-6-real",
        "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish, **choice}],
        "usage": USAGE,
    }


def typed(canonical: dict[str, Any]) -> ChatCompletion:
    return msgspec.convert(canonical, ChatCompletion)


def answered(canonical: dict[str, Any]) -> Message:
    return Message.model_validate(orjson.loads(AnthropicReply().body(typed(canonical))))


def test_a_completion_with_tool_calls_becomes_a_message() -> None:
    message = answered(
        completion(
            {
                "content": "Let me check.",
                "tool_calls": [
                    {
                        "id": "toolu_0",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    },
                    {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}},
                ],
            },
            "tool_calls",
        )
    )
    assert message.id == "msg_chatcmpl-abc" and message.model == "claude-sonnet-4-6-real"
    assert message.content == [
        TextBlock(type="text", text="Let me check."),
        ToolUseBlock(type="tool_use", id="toolu_0", name="get_weather", input={"city": "Paris"}),
        ToolUseBlock(type="tool_use", id="toolu_1", name="get_weather", input={}),
    ]
    assert message.stop_reason == "tool_use" and message.stop_sequence is None
    usage = message.usage
    assert (usage.input_tokens, usage.output_tokens) == (32, 7)
    assert (usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (10, 0)


@pytest.mark.parametrize(
    ("finish", "stop_sequence", "stop_reason"),
    [
        ("stop", None, "end_turn"),
        ("stop", "END", "stop_sequence"),
        ("length", None, "max_tokens"),
        ("content_filter", None, "refusal"),
    ],
)
def test_stop_reasons(finish: str, stop_sequence: str | None, stop_reason: str) -> None:
    extra = {"stop_sequence": stop_sequence} if stop_sequence else {}
    message = answered({**completion({"content": "one two "}, finish, **extra), "id": "msg_already"})
    assert message.id == "msg_already"
    assert message.stop_reason == stop_reason and message.stop_sequence == stop_sequence
    assert message.content == [TextBlock(type="text", text="one two ")]


def test_an_unnamed_stop_sequence_is_stop_sequence_with_a_null_sequence() -> None:
    # canonical.py: "" means a stop sequence ended generation and the provider did not say which.
    message = answered(completion({"content": "one two "}, "stop", stop_sequence=""))
    assert message.stop_reason == "stop_sequence" and message.stop_sequence is None


def test_an_empty_answer_has_no_content_blocks() -> None:
    assert answered(completion({"content": ""}, "stop")).content == []


@pytest.mark.parametrize("arguments", ['{"city": "Par', "[1, 2]"])
def test_tool_arguments_that_are_not_a_json_object_are_a_502(arguments: str) -> None:
    call = {"id": "t", "type": "function", "function": {"name": "get_weather", "arguments": arguments}}
    with pytest.raises(OrqenError) as err:
        AnthropicReply().body(typed(completion({"content": None, "tool_calls": [call]}, "tool_calls")))
    assert err.value.http_status == 502 and "get_weather" in err.value.message


# ---------------------------------------------------------------------------------------
# Streaming reply


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **choice: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-abc",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "claude-sonnet-4-6-real",
        "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish, **choice}],
    }


def text(fragment: str) -> dict[str, Any]:
    return chunk({"content": fragment})


def tool_start(index: int, call_id: str, arguments: str = "") -> dict[str, Any]:
    call = {
        "index": index,
        "id": call_id,
        "type": "function",
        "function": {"name": "get_weather", "arguments": arguments},
    }
    return chunk({"tool_calls": [call]})


def tool_args(index: int, fragment: str) -> dict[str, Any]:
    return chunk({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]})


# The canonical stream's last chunk: the only place most providers report input tokens.
USAGE_CHUNK = {
    "id": "chatcmpl-abc",
    "object": "chat.completion.chunk",
    "created": 1,
    "model": "claude-sonnet-4-6-real",
    "choices": [],
    "usage": USAGE,
}


async def aiter(items: Iterable[dict[str, Any]]) -> AsyncIterator[list[ChatCompletionChunk]]:
    """Canonical chunks, typed, from their JSON shape: one a message, as a paced stream comes."""
    for item in items:
        yield [msgspec.convert(item, ChatCompletionChunk)]


async def streamed(*chunks: dict[str, Any]) -> list[ServerSentEvent]:
    """The reply's SSE body, decoded by the SDK's own SSE decoder."""
    body = b"".join([data async for data in AnthropicReply().stream(aiter(chunks))])
    return list(SSEDecoder().iter_bytes(iter([body])))


def raw_events(sse: list[ServerSentEvent]) -> list[Any]:
    """Every event validated as the SDK's RawMessageStreamEvent; the SDK skips pings too."""
    assert sse[1].event == "ping"
    events = [EVENT.validate_python(event.json()) for event in sse if event.event != "ping"]
    assert [event.type for event in events] == [event.event for event in sse if event.event != "ping"]
    return events


def accumulated(events: list[Any]) -> Message:
    """The SDK's own accumulation of the events, after checking blocks are sequential."""
    open_index, next_index = None, 0
    for event in events:
        if event.type == "content_block_start":
            assert open_index is None and event.index == next_index
            open_index, next_index = event.index, next_index + 1
        elif event.type == "content_block_delta":
            assert event.index == open_index
        elif event.type == "content_block_stop":
            assert event.index == open_index
            open_index = None
    assert open_index is None
    assert [events[0].type, events[-2].type, events[-1].type] == ["message_start", "message_delta", "message_stop"]
    snapshot = None
    json_bufs: dict[int, bytes] = {}
    for event in events:
        snapshot = accumulate_event(event=event, current_snapshot=snapshot, json_bufs=json_bufs)
    return Message.model_validate(snapshot.model_dump() if snapshot else None)


async def test_a_text_stream_reports_exact_usage_from_the_final_usage_chunk() -> None:
    events = raw_events(
        await streamed(
            chunk({"role": "assistant"}), text("Hello"), text(""), text(" world"), chunk(finish="stop"), USAGE_CHUNK
        )
    )
    start = events[0].message
    assert start.id == "msg_chatcmpl-abc" and start.content == [] and start.usage.input_tokens == 0
    assert [e.delta.text for e in events if e.type == "content_block_delta"] == ["Hello", " world"]
    message = accumulated(events)
    assert message.content == [TextBlock(type="text", text="Hello world")]
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    usage = message.usage
    assert (usage.input_tokens, usage.output_tokens) == (32, 7)
    assert (usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (10, 0)


async def test_parallel_tool_calls_stream_live_one_block_after_another() -> None:
    events = raw_events(
        await streamed(
            text("Let me check."),
            tool_start(0, "toolu_0"),
            tool_args(0, '{"ci'),
            tool_args(0, 'ty": "Pa'),
            tool_args(0, 'ris"}'),
            tool_start(1, "toolu_1", '{"city"'),
            tool_args(1, ': "Os'),
            tool_args(1, 'lo"}'),
            chunk(finish="tool_calls"),
            USAGE_CHUNK,
        )
    )
    fragments = [e.delta.partial_json for e in events if e.type == "content_block_delta" and e.index == 2]
    assert fragments == ['{"city"', ': "Os', 'lo"}']  # the second call streamed as it came, not buffered
    message = accumulated(events)
    assert message.content == [
        TextBlock(type="text", text="Let me check."),
        ToolUseBlock(type="tool_use", id="toolu_0", name="get_weather", input={"city": "Paris"}),
        ToolUseBlock(type="tool_use", id="toolu_1", name="get_weather", input={"city": "Oslo"}),
    ]
    assert message.stop_reason == "tool_use"


async def test_interleaved_tool_calls_arrive_complete_and_in_order() -> None:
    events = raw_events(
        await streamed(
            tool_start(0, "toolu_0", '{"city": '),
            tool_start(1, "toolu_1", '{"ci'),
            tool_args(0, '"Par'),
            tool_args(1, 'ty": "Oslo"}'),
            tool_args(0, 'is"}'),
            tool_start(2, "toolu_2", '{"city": "Rome"}'),
            text("Done."),
            chunk(finish="tool_calls"),
            USAGE_CHUNK,
        )
    )
    message = accumulated(events)
    assert message.content == [
        ToolUseBlock(type="tool_use", id="toolu_0", name="get_weather", input={"city": "Paris"}),
        ToolUseBlock(type="tool_use", id="toolu_1", name="get_weather", input={"city": "Oslo"}),
        ToolUseBlock(type="tool_use", id="toolu_2", name="get_weather", input={"city": "Rome"}),
        TextBlock(type="text", text="Done."),
    ]
    held = [e.delta.partial_json for e in events if e.type == "content_block_delta" and e.index == 1]
    assert held == ['{"city": "Oslo"}']  # held back, then sent whole


async def test_a_stream_stopped_by_a_stop_sequence() -> None:
    message = accumulated(
        raw_events(await streamed(text("one "), text("two "), chunk(finish="stop", stop_sequence="three"), USAGE_CHUNK))
    )
    assert message.stop_reason == "stop_sequence" and message.stop_sequence == "three"
    assert message.content == [TextBlock(type="text", text="one two ")]


async def test_a_stream_stopped_by_an_unnamed_stop_sequence() -> None:
    events = raw_events(await streamed(text("one "), chunk(finish="stop", stop_sequence=""), USAGE_CHUNK))
    assert events[-2].delta.stop_reason == "stop_sequence" and events[-2].delta.stop_sequence is None
    message = accumulated(events)
    assert message.stop_reason == "stop_sequence" and message.stop_sequence is None


async def test_a_call_without_arguments_streams_an_empty_object() -> None:
    events = raw_events(
        await streamed(
            tool_start(0, "toolu_0"), tool_start(1, "toolu_1", "{}"), chunk(finish="tool_calls"), USAGE_CHUNK
        )
    )
    assert [e.delta.partial_json for e in events if e.type == "content_block_delta"] == ["{}", "{}"]
    assert [block.input for block in accumulated(events).content if block.type == "tool_use"] == [{}, {}]


async def test_a_filtered_stream_is_a_refusal_with_no_empty_blocks() -> None:
    message = accumulated(
        raw_events(await streamed(chunk({"role": "assistant"}), chunk(finish="content_filter"), USAGE_CHUNK))
    )
    assert message.stop_reason == "refusal" and message.content == []


async def test_broken_tool_arguments_in_a_stream_are_a_502() -> None:
    with pytest.raises(OrqenError) as err:
        await streamed(tool_start(0, "toolu_0", '{"city": '), chunk(finish="tool_calls"), USAGE_CHUNK)
    assert err.value.http_status == 502


async def test_a_stream_that_ends_before_its_finish_is_a_502() -> None:
    with pytest.raises(OrqenError) as err:
        await streamed(text("Hel"))
    assert err.value.http_status == 502


def test_a_stream_error_is_the_sdks_error_event() -> None:
    data = AnthropicReply().stream_error(unavailable("The provider is overloaded."))
    [event] = SSEDecoder().iter_bytes(iter([data]))
    assert event.event == "error"
    assert event.json() == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "The provider is overloaded."},
    }


# ---------------------------------------------------------------------------------------
# The official SDK end to end: its request through `translate`, the reply back into it


def sdk_client(canonical: dict[str, Any] | list[dict[str, Any]], seen: list[dict[str, Any]]) -> AsyncAnthropic:
    """An SDK client whose transport translates each request and answers with `canonical`."""

    async def handle(http_request: httpx2.Request) -> httpx2.Response:
        chat, reply = translate(http_request.content, http_request.headers.get("anthropic-beta", ""))
        seen.append(orjson.loads(encode_request(chat)))
        if isinstance(canonical, list):
            body = b"".join([data async for data in reply.stream(aiter(canonical))])
            return httpx2.Response(200, content=body, headers={"content-type": reply.stream_media_type})
        return httpx2.Response(200, content=reply.body(typed(canonical)), headers={"content-type": "application/json"})

    http_client = httpx2.AsyncClient(transport=httpx2.MockTransport(handle))
    return AsyncAnthropic(api_key="sk-orq-test", http_client=http_client, _strict_response_validation=True)


async def test_the_sdk_streams_a_tool_call_through_orqen() -> None:
    seen: list[dict[str, Any]] = []
    chunks = [text("Let me check."), tool_start(0, "toolu_0", '{"city":'), tool_args(0, ' "Paris"}')]
    client = sdk_client([*chunks, chunk(finish="tool_calls"), USAGE_CHUNK], seen)
    async with client.beta.messages.stream(
        model="claude-sonnet-4-6",
        max_tokens=100,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[{"name": "get_weather", "input_schema": {"type": "object"}}],
        betas=["fine-grained-tool-streaming-2025-05-14"],
    ) as stream:
        message = await stream.get_final_message()
    assert seen[0]["stream"] is True
    assert seen[0]["anthropic_beta"] == ["fine-grained-tool-streaming-2025-05-14"]
    assert [block.type for block in message.content] == ["text", "tool_use"]
    assert message.content[1].type == "tool_use" and message.content[1].input == {"city": "Paris"}
    assert (message.usage.input_tokens, message.usage.cache_read_input_tokens, message.usage.output_tokens) == (
        32,
        10,
        7,
    )


async def test_the_sdk_reads_a_message_and_an_in_stream_error() -> None:
    seen: list[dict[str, Any]] = []
    client = sdk_client(completion({"content": "echo: hi"}, "stop"), seen)
    message = await client.messages.create(
        model="claude-sonnet-4-6", max_tokens=100, system="Be brief.", messages=[{"role": "user", "content": "hi"}]
    )
    assert message.content == [TextBlock(type="text", text="echo: hi")] and message.stop_reason == "end_turn"
    assert seen[0]["messages"][0] == {"role": "system", "content": "Be brief."}

    reply = AnthropicReply()
    events = reply.stream(aiter([text("Hel"), text("lo")]))
    body = await anext(events)  # message_start, ping, the text block begun
    body += reply.stream_error(unavailable("The provider is overloaded."))

    async def handle(_: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=body, headers={"content-type": "text/event-stream"})

    failing = AsyncAnthropic(api_key="k", http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(handle)))
    with pytest.raises(APIStatusError, match="overloaded"):
        async with failing.messages.stream(
            model="claude-sonnet-4-6", max_tokens=100, messages=[{"role": "user", "content": "hi"}]
        ) as stream:
            await stream.get_final_message()
