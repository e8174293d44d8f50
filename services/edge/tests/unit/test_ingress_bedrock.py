"""The Bedrock Converse ingress, checked against botocore's own serializer, parsers and event-stream decoder."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import botocore.session
import grpc
import msgspec
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import EventStreamError
from botocore.parsers import RestJSONParser
from botocore.serialize import create_serializer
from botocore.validate import validate_parameters
from litestar import Litestar, Response
from litestar.datastructures import Headers
from litestar.exceptions import HTTPException
from litestar.testing import TestClient

from orqen_common.context import Principal
from orqen_common.errors import OrqenError
from orqen_common.formats.openai import ChatCompletion, ChatCompletionChunk, encode
from orqen_edge.auth import SIGV4_MESSAGE, api_key_principal
from orqen_edge.errors import handle_http_exception, handle_orqen_error
from orqen_edge.ingress import bedrock as bedrock_converse
from orqen_edge.ingress.bedrock import (
    BedrockReply,
    canonical_model,
    parse_converse_path,
    stream_exception_type,
    translate,
)
from orqen_edge.runtime import Runtime

BEDROCK = botocore.session.get_session().get_service_model("bedrock-runtime")
CONVERSE = BEDROCK.operation_model("Converse")
CONVERSE_STREAM = BEDROCK.operation_model("ConverseStream")

HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"
PROFILE_ARN = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0"
PNG = b"\x89PNG\r\n\x1a\n fake image bytes"
USAGE = {
    "prompt_tokens": 42,
    "completion_tokens": 7,
    "total_tokens": 49,
    "prompt_tokens_details": {"cached_tokens": 10},
}
BEDROCK_USAGE = {
    "inputTokens": 32,
    "outputTokens": 7,
    "totalTokens": 49,
    "cacheReadInputTokens": 10,
    "cacheWriteInputTokens": 0,
}


# ---- what boto3 sends, and how boto3 reads our answer --------------------------------------------


def boto3_request(operation: str = "Converse", **params: Any) -> tuple[str, dict[str, Any]]:
    """The URL path and JSON body boto3 sends for these parameters (validated as boto3 does first)."""
    model = BEDROCK.operation_model(operation)
    validate_parameters(params, model.input_shape)
    serialized = create_serializer("rest-json").serialize_to_request(params, model)
    assert serialized["headers"]["Content-Type"] == "application/json"
    return serialized["url_path"], json.loads(serialized["body"])


def translated(operation: str = "Converse", **params: Any) -> dict[str, Any]:
    """The canonical request for what boto3 sends, through the same path parsing as the route."""
    params.setdefault("modelId", HAIKU)
    path, body = boto3_request(operation, **params)
    model_id, stream = parse_converse_path(path)
    chat, _ = translate(json.dumps(body).encode(), model_id=model_id, stream=stream)
    return msgspec.json.decode(encode(chat))  # type: ignore[no-any-return]


def boto3_response(body: bytes) -> dict[str, Any]:
    parsed = RestJSONParser().parse({"status_code": 200, "headers": {}, "body": body}, CONVERSE.output_shape)
    parsed.pop("ResponseMetadata", None)
    return parsed  # type: ignore[no-any-return]


class _RawStream:
    """The raw HTTP body as botocore reads it, in small pieces so frames straddle reads."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self) -> Iterator[bytes]:
        for i in range(0, len(self._data), 7):
            yield self._data[i : i + 7]


def boto3_events(data: bytes) -> Iterator[dict[str, Any]]:
    """The events of converse_stream()["stream"], decoded exactly as boto3 decodes them."""
    response = {
        "status_code": 200,
        "headers": {},
        "body": _RawStream(data),
        "context": {"operation_name": "ConverseStream"},
    }
    parsed = RestJSONParser().parse(response, CONVERSE_STREAM.output_shape)
    return iter(parsed["stream"])


async def encoded(reply: BedrockReply, chunks: list[dict[str, Any]]) -> bytes:
    async def source() -> AsyncIterator[list[ChatCompletionChunk]]:
        for chunk in chunks:
            yield [msgspec.convert(chunk, ChatCompletionChunk)]

    return b"".join([data async for data in reply.stream(source())])


# ---- canonical stream chunks ----------------------------------------------------------------------


def chunk(delta: dict[str, Any], finish: str | None = None, **choice: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, **choice}],
    }


def text(content: str) -> dict[str, Any]:
    return chunk({"content": content})


def call_start(index: int, call_id: str, name: str, arguments: str = "") -> dict[str, Any]:
    function = {"name": name, "arguments": arguments}
    return chunk({"tool_calls": [{"index": index, "id": call_id, "type": "function", "function": function}]})


def call_args(index: int, arguments: str) -> dict[str, Any]:
    return chunk({"tool_calls": [{"index": index, "function": {"arguments": arguments}}]})


def finish(reason: str, **choice: Any) -> dict[str, Any]:
    return chunk({}, reason, **choice)


def usage_chunk() -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [],
        "usage": USAGE,
    }


def blocks_of(events: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """(event name, content block index) of each content-block event, in order."""
    out = []
    for event in events:
        ((name, payload),) = event.items()
        if name.startswith("contentBlock"):
            out.append((name, payload["contentBlockIndex"]))
    return out


def tool_inputs(events: list[dict[str, Any]]) -> dict[int, tuple[str, str, Any]]:
    """Block index -> (toolUseId, name, parsed input), from the joined input fragments as a caller joins them."""
    starts: dict[int, dict[str, str]] = {}
    fragments: dict[int, list[str]] = {}
    for event in events:
        if "contentBlockStart" in event:
            start = event["contentBlockStart"]
            starts[start["contentBlockIndex"]] = start["start"]["toolUse"]
        elif "contentBlockDelta" in event and "toolUse" in event["contentBlockDelta"]["delta"]:
            delta = event["contentBlockDelta"]
            fragments.setdefault(delta["contentBlockIndex"], []).append(delta["delta"]["toolUse"]["input"])
    return {i: (start["toolUseId"], start["name"], json.loads("".join(fragments[i]))) for i, start in starts.items()}


def texts_of(events: list[dict[str, Any]]) -> dict[int, str]:
    """Block index -> the block's text, joined from its deltas."""
    texts: dict[int, str] = {}
    for event in events:
        delta = event.get("contentBlockDelta")
        if delta and "text" in delta["delta"]:
            index = delta["contentBlockIndex"]
            texts[index] = texts.get(index, "") + delta["delta"]["text"]
    return texts


def assert_blocks_are_sequential(events: list[dict[str, Any]]) -> None:
    """Each block's events are contiguous, end with contentBlockStop, and indices count up from 0."""
    expected = 0
    for name, index in blocks_of(events):
        assert index == expected, blocks_of(events)
        if name == "contentBlockStop":
            expected += 1


# ---- path and model ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "model_id", "stream"),
    [
        ("Converse", HAIKU, False),
        ("ConverseStream", HAIKU, True),
        ("Converse", PROFILE_ARN, False),
        ("ConverseStream", PROFILE_ARN, True),
        ("Converse", "groq/llama-3.3-70b-versatile", False),
    ],
)
def test_the_model_id_survives_botos_percent_encoding(operation: str, model_id: str, stream: bool) -> None:
    path, _ = boto3_request(operation, modelId=model_id, messages=[])
    if model_id == PROFILE_ARN:
        assert "%3A" in path and "%2F" in path  # what a raw-path match has to undo
    assert parse_converse_path(path) == (model_id, stream)


@pytest.mark.parametrize(
    "path", ["/model/x/invoke", "/model/x/invoke-with-response-stream", "/model/converse", "/model/", "/model/x/y"]
)
def test_other_model_paths_are_404(path: str) -> None:
    with pytest.raises(OrqenError) as err:
        parse_converse_path(path)
    assert err.value.http_status == 404
    assert err.value.kind.bedrock_code == "ResourceNotFoundException"


@pytest.mark.parametrize(
    ("model_id", "expected"),
    [
        (HAIKU, "bedrock/" + HAIKU),
        ("us.amazon.nova-pro-v1:0", "bedrock/us.amazon.nova-pro-v1:0"),
        ("us-gov.anthropic.claude-3-haiku-20240307-v1:0", "bedrock/us-gov.anthropic.claude-3-haiku-20240307-v1:0"),
        ("global.anthropic.claude-sonnet-4-20250514-v1:0", "bedrock/global.anthropic.claude-sonnet-4-20250514-v1:0"),
        ("meta.llama3-70b-instruct-v1:0", "bedrock/meta.llama3-70b-instruct-v1:0"),
        ("openai.gpt-oss-120b-1:0", "bedrock/openai.gpt-oss-120b-1:0"),
        (PROFILE_ARN, "bedrock/" + PROFILE_ARN),
        (
            "arn:aws-cn:bedrock:cn-north-1::foundation-model/x",
            "bedrock/arn:aws-cn:bedrock:cn-north-1::foundation-model/x",
        ),
        ("gpt-4o-mini", "gpt-4o-mini"),
        ("claude-sonnet-4-6", "claude-sonnet-4-6"),
        ("orqen/auto", "orqen/auto"),
        ("groq/llama-3.3-70b-versatile", "groq/llama-3.3-70b-versatile"),
        ("anthropic/claude-sonnet-4-6", "anthropic/claude-sonnet-4-6"),
        ("metallama-3", "metallama-3"),
        ("xx.anthropic.claude", "xx.anthropic.claude"),
    ],
)
def test_native_bedrock_ids_go_to_bedrock_unchanged(model_id: str, expected: str) -> None:
    assert canonical_model(model_id) == expected


# ---- request translation ------------------------------------------------------------------------------


def test_a_full_conversation_becomes_the_canonical_request() -> None:
    chat = translated(
        "ConverseStream",
        modelId=PROFILE_ARN,
        system=[{"text": "Be brief."}, {"cachePoint": {"type": "default"}}, {"text": "Use tools."}],
        messages=[
            {
                "role": "user",
                "content": [
                    {"text": "What is in this picture, and the weather?"},
                    {"image": {"format": "png", "source": {"bytes": PNG}}},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"reasoningContent": {"reasoningText": {"text": "I should look it up.", "signature": "sig"}}},
                    {"text": "Let me check."},
                    {"toolUse": {"toolUseId": "tooluse_0", "name": "weather", "input": {"city": "Paris"}}},
                    {"toolUse": {"toolUseId": "tooluse_1", "name": "clock", "input": {}}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"toolResult": {"toolUseId": "tooluse_0", "content": [{"json": {"temp": 21, "sky": "clear"}}]}},
                    {"text": "Also, thanks."},
                    {"toolResult": {"toolUseId": "tooluse_1", "content": [{"text": "12:00"}], "status": "error"}},
                    {"cachePoint": {"type": "default"}},
                ],
            },
        ],
        inferenceConfig={"maxTokens": 300, "temperature": 0.2, "topP": 0.9, "stopSequences": ["END"]},
        toolConfig={
            "tools": [
                {
                    "toolSpec": {
                        "name": "weather",
                        "description": "Weather of a city.",
                        "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}}},
                    }
                },
                {"toolSpec": {"name": "clock", "inputSchema": {"json": {"type": "object"}}, "strict": True}},
                {"cachePoint": {"type": "default"}},
            ],
            "toolChoice": {"tool": {"name": "weather"}},
        },
        additionalModelRequestFields={
            "top_k": 40,
            "thinking": {"type": "enabled", "budget_tokens": 1024},
            "anthropic_beta": ["interleaved-thinking-2025-05-14"],
        },
        requestMetadata={"team": "search"},
        performanceConfig={"latency": "optimized"},
        additionalModelResponseFieldPaths=["/stop_sequence"],
    )
    image_url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    ephemeral = {"type": "ephemeral"}
    assert chat == {
        "model": "bedrock/" + PROFILE_ARN,
        "messages": [
            {
                "role": "system",
                "content": [
                    {"type": "text", "text": "Be brief.", "cache_control": ephemeral},
                    {"type": "text", "text": "Use tools."},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this picture, and the weather?"},
                    {"type": "image_url", "image_url": {"url": image_url}},
                ],
            },
            {
                "role": "assistant",
                "content": "Let me check.",
                "tool_calls": [
                    {
                        "id": "tooluse_0",
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"city":"Paris"}'},
                    },
                    {"id": "tooluse_1", "type": "function", "function": {"name": "clock", "arguments": "{}"}},
                ],
            },
            # Tool results first, in order, then the user's own parts.
            {"role": "tool", "tool_call_id": "tooluse_0", "content": '{"temp":21,"sky":"clear"}'},
            {
                "role": "tool",
                "tool_call_id": "tooluse_1",
                "content": [{"type": "text", "text": "12:00", "cache_control": ephemeral}],
                "is_error": True,
            },
            {"role": "user", "content": "Also, thanks."},
        ],
        "max_tokens": 300,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": ["END"],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "weather",
                    "description": "Weather of a city.",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                },
            },
            {
                "type": "function",
                "function": {"name": "clock", "parameters": {"type": "object"}, "strict": True},
                "cache_control": ephemeral,
            },
        ],
        "tool_choice": {"type": "function", "function": {"name": "weather"}},
        "top_k": 40,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "anthropic_beta": ["interleaved-thinking-2025-05-14"],
        "stream": True,
    }


def test_a_plain_converse_call_is_minimal_and_not_streamed() -> None:
    chat = translated(modelId="gpt-4o-mini", messages=[{"role": "user", "content": [{"text": "hi"}]}])
    assert chat == {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(("choice", "expected"), [({"auto": {}}, "auto"), ({"any": {}}, "required")])
def test_tool_choice(choice: dict[str, Any], expected: str) -> None:
    tool = {"toolSpec": {"name": "f", "inputSchema": {"json": {"type": "object"}}}}
    chat = translated(
        messages=[{"role": "user", "content": [{"text": "hi"}]}],
        toolConfig={"tools": [tool], "toolChoice": choice},
    )
    assert chat["tool_choice"] == expected


def test_a_cache_point_with_a_ttl_keeps_it() -> None:
    chat = translated(
        messages=[{"role": "user", "content": [{"text": "long"}, {"cachePoint": {"type": "default", "ttl": "1h"}}]}]
    )
    assert chat["messages"][0]["content"] == [
        {"type": "text", "text": "long", "cache_control": {"type": "ephemeral", "ttl": "1h"}}
    ]


def _user(*blocks: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"role": "user", "content": list(blocks)}]


_TOOL = {"toolSpec": {"name": "f", "inputSchema": {"json": {"type": "object"}}}}


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"messages": _user({"document": {"name": "d", "format": "txt", "source": {"bytes": b"x"}}})}, "'document'"),
        ({"messages": _user({"video": {"format": "mp4", "source": {"bytes": b"x"}}})}, "'video'"),
        ({"messages": _user({"audio": {"format": "mp3", "source": {"bytes": b"x"}}})}, "'audio'"),
        ({"messages": _user({"guardContent": {"text": {"text": "x"}}})}, "'guardContent'"),
        (
            {"messages": _user({"image": {"format": "png", "source": {"s3Location": {"uri": "s3://b/k.png"}}}})},
            "'s3Location'",
        ),
        (
            {
                "messages": _user(
                    {
                        "toolResult": {
                            "toolUseId": "t",
                            "content": [{"image": {"format": "png", "source": {"bytes": PNG}}}],
                        }
                    }
                )
            },
            "'image' block in a tool result",
        ),
        (
            {
                "messages": _user(
                    {
                        "toolResult": {
                            "toolUseId": "t",
                            "content": [{"document": {"name": "d", "source": {"text": "x"}}}],
                        }
                    }
                )
            },
            "'document' block in a tool result",
        ),
        ({"system": [{"guardContent": {"text": {"text": "x"}}}]}, "'guardContent' system block"),
        ({"guardrailConfig": {"guardrailIdentifier": "g", "guardrailVersion": "1"}}, "'guardrailConfig'"),
        ({"promptVariables": {"name": {"text": "x"}}}, "'promptVariables'"),
        (
            {"outputConfig": {"textFormat": {"type": "json_schema", "structure": {"jsonSchema": {"schema": "{}"}}}}},
            "'outputConfig'",
        ),
        ({"additionalModelRequestFields": {"top_k": 5, "response_format": {}}}, "'response_format'"),
        ({"toolConfig": {"tools": [{"systemTool": {"name": "nova_grounding"}}]}}, "'systemTool' tool"),
    ],
)
def test_each_unsupported_feature_is_400_naming_it(params: dict[str, Any], named: str) -> None:
    params.setdefault("messages", _user({"text": "hi"}))
    with pytest.raises(OrqenError) as err:
        translated(**params)
    assert err.value.http_status == 400
    assert err.value.kind.bedrock_code == "ValidationException"
    assert named in err.value.message and "not supported" in err.value.message


def _body(**fields: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": [{"text": "hi"}]}], **fields}


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ([], "The request body"),
        (_body(foo=1), "unknown field `foo`"),
        ({}, "required field `messages`"),
        ({"messages": []}, "`$.messages`"),
        ({"messages": [{"role": "system", "content": [{"text": "x"}]}]}, "`$.messages[0].role`"),
        ({"messages": [{"role": "user", "content": "hi"}]}, "`$.messages[0].content`"),
        ({"messages": [{"role": "user", "content": []}]}, "`$.messages[0].content`"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"text": "a", "image": {"format": "png", "source": {"bytes": "AA=="}}}],
                    }
                ]
            },
            "exactly one of `text`, `image`",
        ),
        ({"messages": [{"role": "user", "content": [{}]}]}, "- at `$.messages[0].content[0]`."),
        ({"messages": [{"role": "user", "content": [{"text": 3}]}]}, "`$.messages[0].content[0].text`"),
        (
            {"messages": [{"role": "user", "content": [{"toolUse": {"toolUseId": "t", "name": "f", "input": {}}}]}]},
            "belongs in an assistant message - at `$.messages[0].content[0]`",
        ),
        (
            {"messages": [{"role": "assistant", "content": [{"toolResult": {"toolUseId": "t", "content": []}}]}]},
            "belongs in a user message - at `$.messages[0].content[0]`",
        ),
        (
            {"messages": [{"role": "assistant", "content": [{"toolUse": {"toolUseId": "t", "name": "f"}}]}]},
            "field `input` - at `$.messages[0].content[0].toolUse`",
        ),
        (
            {
                "messages": [
                    {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t", "name": "f", "input": [1]}}]}
                ]
            },
            "`$.messages[0].content[0].toolUse.input`",
        ),
        (
            {"messages": [{"role": "user", "content": [{"text": "a"}, {"cachePoint": {}}]}]},
            "field `type` - at `$.messages[0].content[1].cachePoint`",
        ),
        (
            {"messages": [{"role": "user", "content": [{"image": {"format": "bmp", "source": {"bytes": "AA=="}}}]}]},
            "`$.messages[0].content[0].image.format`",
        ),
        (
            {"messages": [{"role": "user", "content": [{"image": {"format": "png", "source": {"bytes": "no!"}}}]}]},
            "`$.messages[0].content[0].image.source.bytes`",
        ),
        (_body(inferenceConfig={"maxTokens": "10"}), "`$.inferenceConfig.maxTokens`"),
        (_body(inferenceConfig={"maxTokens": 0}), "`$.inferenceConfig.maxTokens`"),
        (_body(inferenceConfig={"temperature": "hot"}), "`$.inferenceConfig.temperature`"),
        (_body(inferenceConfig={"stopSequences": [1]}), "`$.inferenceConfig.stopSequences[0]`"),
        (_body(inferenceConfig={"max_tokens": 10}), "unknown field `max_tokens` - at `$.inferenceConfig`"),
        (_body(toolConfig={"tools": []}), "`$.toolConfig.tools`"),
        (_body(toolConfig={"tools": [{"cachePoint": {"type": "default"}}]}), "`toolSpec` - at `$.toolConfig.tools`"),
        (
            _body(toolConfig={"tools": [{"toolSpec": {"name": "f"}}]}),
            "field `inputSchema` - at `$.toolConfig.tools[0].toolSpec`",
        ),
        (
            _body(toolConfig={"tools": [{"toolSpec": {"name": "f", "inputSchema": {"json": [1]}}}]}),
            "Expected `object | null`, got `array` - at `$.toolConfig.tools[0].toolSpec.inputSchema.json`",
        ),
        (
            _body(toolConfig={"tools": [{"toolSpec": {"name": "f", "inputSchema": {"json": None}}}]}),
            "exactly one of `json` - at `$.toolConfig.tools[0].toolSpec.inputSchema`",
        ),
        (
            _body(toolConfig={"tools": [_TOOL], "toolChoice": {"none": {}}}),
            "unknown field `none` - at `$.toolConfig.toolChoice`",
        ),
        (_body(additionalModelRequestFields={"top_k": "5"}), "`$.additionalModelRequestFields.top_k`"),
        (_body(system="be brief"), "`$.system`"),
    ],
)
def test_malformed_requests_are_400_naming_the_field(body: Any, named: str) -> None:
    with pytest.raises(OrqenError) as err:
        translate(json.dumps(body).encode(), model_id=HAIKU, stream=False)
    assert err.value.http_status == 400
    assert named in err.value.message


# ---- non-streaming reply --------------------------------------------------------------------------------


def completion(message: dict[str, Any], finish_reason: str, **choice: Any) -> ChatCompletion:
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason, **choice}],
        "usage": USAGE,
    }
    return msgspec.convert(body, ChatCompletion)


def test_a_completion_with_tool_calls_reads_as_a_converse_response() -> None:
    message = {
        "role": "assistant",
        "content": "Let me check.",
        "tool_calls": [
            {"id": "call_0", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Paris"}'}},
            {"id": "call_1", "type": "function", "function": {"name": "clock", "arguments": ""}},
        ],
    }
    parsed = boto3_response(BedrockReply().body(completion(message, "tool_calls")))
    assert parsed["output"] == {
        "message": {
            "role": "assistant",
            "content": [
                {"text": "Let me check."},
                {"toolUse": {"toolUseId": "call_0", "name": "weather", "input": {"city": "Paris"}}},
                {"toolUse": {"toolUseId": "call_1", "name": "clock", "input": {}}},
            ],
        }
    }
    assert parsed["stopReason"] == "tool_use"
    assert parsed["usage"] == BEDROCK_USAGE
    assert isinstance(parsed["metrics"]["latencyMs"], int) and parsed["metrics"]["latencyMs"] >= 0


@pytest.mark.parametrize("arguments", ['{"city": "Par', "[1, 2]"])
def test_tool_arguments_that_are_not_a_json_object_are_a_502_naming_the_tool(arguments: str) -> None:
    call = {"id": "call_0", "type": "function", "function": {"name": "weather", "arguments": arguments}}
    with pytest.raises(OrqenError) as err:
        BedrockReply().body(completion({"role": "assistant", "content": None, "tool_calls": [call]}, "tool_calls"))
    assert err.value.http_status == 502 and "weather" in err.value.message


@pytest.mark.parametrize(
    ("finish_reason", "choice", "stop_reason"),
    [
        ("stop", {}, "end_turn"),
        ("stop", {"stop_sequence": "END"}, "stop_sequence"),
        ("length", {}, "max_tokens"),
        ("content_filter", {}, "content_filtered"),
    ],
)
def test_stop_reasons(finish_reason: str, choice: dict[str, Any], stop_reason: str) -> None:
    body = BedrockReply().body(completion({"role": "assistant", "content": "one two "}, finish_reason, **choice))
    parsed = boto3_response(body)
    assert parsed["stopReason"] == stop_reason
    assert parsed["output"]["message"]["content"] == [{"text": "one two "}]


# ---- streaming reply ----------------------------------------------------------------------------------------


async def test_text_and_sequential_tool_calls_stream_as_bedrock_does() -> None:
    chunks = [
        chunk({"role": "assistant", "content": ""}),
        text("Let"),
        text(" me"),
        text(" check."),
        call_start(0, "call_0", "weather"),
        call_args(0, '{"ci'),
        call_args(0, 'ty": '),
        call_args(0, '"Paris"}'),
        call_start(1, "call_1", "clock", '{"tz"'),
        call_args(1, ': "CET"'),
        call_args(1, "}"),
        finish("tool_calls"),
        usage_chunk(),
    ]
    events = list(boto3_events(await encoded(BedrockReply(), chunks)))

    assert events[0] == {"messageStart": {"role": "assistant"}}
    assert blocks_of(events) == [
        ("contentBlockDelta", 0),
        ("contentBlockDelta", 0),
        ("contentBlockDelta", 0),
        ("contentBlockStop", 0),
        ("contentBlockStart", 1),
        ("contentBlockDelta", 1),
        ("contentBlockDelta", 1),
        ("contentBlockDelta", 1),
        ("contentBlockStop", 1),
        ("contentBlockStart", 2),
        ("contentBlockDelta", 2),
        ("contentBlockDelta", 2),
        ("contentBlockDelta", 2),
        ("contentBlockStop", 2),
    ]
    assert texts_of(events) == {0: "Let me check."}
    assert tool_inputs(events) == {1: ("call_0", "weather", {"city": "Paris"}), 2: ("call_1", "clock", {"tz": "CET"})}
    assert events[-2] == {"messageStop": {"stopReason": "tool_use"}}
    # The metadata comes last, with the exact usage of the final usage chunk.
    assert list(events[-1]) == ["metadata"]
    assert events[-1]["metadata"]["usage"] == BEDROCK_USAGE
    assert isinstance(events[-1]["metadata"]["metrics"]["latencyMs"], int)


async def test_interleaved_tool_calls_arrive_whole_and_in_order() -> None:
    chunks = [
        text("Checking both."),
        call_start(0, "call_0", "weather", '{"city"'),
        call_start(1, "call_1", "clock", '{"tz"'),  # call 0 is not finished yet
        call_args(0, ': "Paris"'),
        call_args(1, ': "CET"}'),
        text(" Done."),
        call_args(0, "}"),
        call_start(2, "call_2", "noop"),
        finish("tool_calls"),
        usage_chunk(),
    ]
    events = list(boto3_events(await encoded(BedrockReply(), chunks)))

    assert_blocks_are_sequential(events)
    assert tool_inputs(events) == {
        1: ("call_0", "weather", {"city": "Paris"}),
        2: ("call_1", "clock", {"tz": "CET"}),
        4: ("call_2", "noop", {}),
    }
    assert texts_of(events) == {0: "Checking both.", 3: " Done."}
    assert events[-2] == {"messageStop": {"stopReason": "tool_use"}}
    assert events[-1]["metadata"]["usage"] == BEDROCK_USAGE


async def test_text_after_a_complete_tool_call_opens_a_new_block() -> None:
    chunks = [
        call_start(0, "call_0", "clock", "{}"),
        text("after"),
        finish("stop", stop_sequence="END"),
        usage_chunk(),
    ]
    events = list(boto3_events(await encoded(BedrockReply(), chunks)))
    assert blocks_of(events) == [
        ("contentBlockStart", 0),
        ("contentBlockDelta", 0),
        ("contentBlockStop", 0),
        ("contentBlockDelta", 1),
        ("contentBlockStop", 1),
    ]
    assert tool_inputs(events) == {0: ("call_0", "clock", {})}
    assert events[-2] == {"messageStop": {"stopReason": "stop_sequence"}}


async def test_a_stream_that_ends_without_a_finish_still_closes_the_message() -> None:
    events = list(boto3_events(await encoded(BedrockReply(), [text("partial"), usage_chunk()])))
    assert [next(iter(e)) for e in events] == [
        "messageStart",
        "contentBlockDelta",
        "contentBlockStop",
        "messageStop",
        "metadata",
    ]
    assert events[-2] == {"messageStop": {"stopReason": "end_turn"}}


async def test_arguments_after_a_complete_call_are_an_error_not_a_silent_loss() -> None:
    chunks = [
        call_start(0, "call_0", "a", "{}"),
        call_start(1, "call_1", "b", "{}"),
        call_args(0, '{"late": 1}'),
        finish("tool_calls"),
    ]
    with pytest.raises(OrqenError) as err:
        await encoded(BedrockReply(), chunks)
    assert err.value.http_status == 502


async def test_tool_arguments_cut_off_in_a_stream_are_an_error() -> None:
    chunks = [call_start(0, "call_0", "weather", '{"city": "Par'), finish("length"), usage_chunk()]
    with pytest.raises(OrqenError) as err:
        await encoded(BedrockReply(), chunks)
    assert err.value.http_status == 502 and "weather" in err.value.message


@pytest.mark.parametrize(
    ("code", "exception_type"),
    [
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "throttlingException"),
        (grpc.StatusCode.INVALID_ARGUMENT, "validationException"),
        (grpc.StatusCode.UNAVAILABLE, "serviceUnavailableException"),
        (grpc.StatusCode.INTERNAL, "internalServerException"),
        # Not modelled in ConverseStream's union; botocore would drop the message.
        (grpc.StatusCode.DEADLINE_EXCEEDED, "modelStreamErrorException"),
    ],
)
async def test_an_error_mid_stream_makes_botocore_raise_with_its_code(
    code: grpc.StatusCode, exception_type: str
) -> None:
    reply = BedrockReply()

    async def failing() -> AsyncIterator[list[ChatCompletionChunk]]:
        yield [msgspec.convert(text("one"), ChatCompletionChunk)]
        yield [msgspec.convert(text(" two"), ChatCompletionChunk)]
        raise OrqenError.of(code, "slow down")

    # As the pipeline does: the reply's frames until the failure, then its error event.
    data = []
    with pytest.raises(OrqenError) as failure:
        async for frame in reply.stream(failing()):
            data.append(frame)
    events = boto3_events(b"".join([*data, reply.stream_error(failure.value)]))

    assert [next(events) for _ in range(3)] == [
        {"messageStart": {"role": "assistant"}},
        {"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"text": "one"}}},
        {"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"text": " two"}}},
    ]
    with pytest.raises(EventStreamError) as err:
        next(events)
    assert err.value.response["Error"] == {"Code": exception_type, "Message": "slow down"}


def test_stream_exception_names_are_lower_camel() -> None:
    assert stream_exception_type("ThrottlingException") == "throttlingException"
    assert stream_exception_type("ResourceNotFoundException") == "modelStreamErrorException"


# ---- the route, through Litestar ---------------------------------------------------------------------------------


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient[Litestar]]:
    """The route with serve_chat replaced: it answers with the canonical request the route's translator made."""

    async def fake_serve_chat(
        request: Any, runtime: Any, principal: Any, ingress: str, translate: Any
    ) -> Response[Any]:
        chat, reply = translate(await request.body())
        assert ingress == "bedrock" and isinstance(reply, BedrockReply)
        return Response(content=msgspec.json.decode(encode(chat)))

    async def fake_chat_caller(request: Any) -> tuple[Runtime, Principal]:
        return object.__new__(Runtime), Principal(kind="api_key")

    monkeypatch.setattr(bedrock_converse, "serve_chat", fake_serve_chat)
    monkeypatch.setattr(bedrock_converse, "chat_caller", fake_chat_caller)
    app = Litestar(
        route_handlers=[bedrock_converse.converse],
        exception_handlers={OrqenError: handle_orqen_error, HTTPException: handle_http_exception},
    )
    with TestClient(app) as test_client:
        yield test_client


def test_the_route_reads_the_model_id_from_the_raw_path(client: TestClient[Litestar]) -> None:
    path, body = boto3_request("ConverseStream", modelId=PROFILE_ARN, messages=_user({"text": "hi"}))
    response = client.post(path, json=body)
    assert response.status_code == 200, response.text
    assert response.json()["model"] == "bedrock/" + PROFILE_ARN
    assert response.json()["stream"] is True


def test_the_route_answers_unknown_model_operations_in_bedrocks_shape(client: TestClient[Litestar]) -> None:
    response = client.post(f"/model/{HAIKU}/invoke", json={})
    assert response.status_code == 404
    assert response.headers["x-amzn-errortype"] == "ResourceNotFoundException"
    assert "converse" in response.json()["message"]


# ---- SigV4 callers are told how to authenticate ------------------------------------------------------------------


class _Request:
    def __init__(self, headers: dict[str, str]) -> None:
        self.headers = Headers(headers)


class _Runtime:
    def __init__(self) -> None:
        self.tokens: list[str] = []

    async def authenticate(self, token: str) -> Principal | None:
        self.tokens.append(token)
        return Principal(kind="api_key", account_id="acct") if token == "sk-orq-good" else None


def _sigv4_headers() -> dict[str, str]:
    request = AWSRequest(method="POST", url="https://localhost:8443/model/x/converse", data=b"{}")
    SigV4Auth(Credentials("AKIDEXAMPLE", "secret"), "bedrock", "us-east-1").add_auth(request)
    return dict(request.headers.items())


async def test_a_sigv4_signed_call_is_told_to_use_the_key_as_a_bedrock_api_key() -> None:
    headers = _sigv4_headers()
    assert headers["Authorization"].startswith("AWS4-HMAC-SHA256 ")
    runtime = _Runtime()
    with pytest.raises(OrqenError) as err:
        await api_key_principal(_Request(headers), runtime)  # type: ignore[arg-type]
    assert err.value.http_status == 401
    assert err.value.message == SIGV4_MESSAGE
    assert "AWS_BEARER_TOKEN_BEDROCK" in SIGV4_MESSAGE and "HTTPS" in SIGV4_MESSAGE
    assert runtime.tokens == []


@pytest.mark.parametrize("headers", [{"authorization": "Bearer sk-orq-good"}, {"x-api-key": "sk-orq-good"}])
async def test_bearer_and_x_api_key_still_authenticate(headers: dict[str, str]) -> None:
    runtime = _Runtime()
    principal = await api_key_principal(_Request(headers), runtime)  # type: ignore[arg-type]
    assert principal.account_id == "acct" and runtime.tokens == ["sk-orq-good"]
