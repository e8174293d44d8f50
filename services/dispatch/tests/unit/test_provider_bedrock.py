"""The Bedrock Converse translator against a mock upstream that checks every request with botocore itself.

Each body is validated against botocore's service model for the operation and re-serialised
by botocore's REST-JSON serialiser (same path, same JSON); each SigV4 signature is recomputed
by botocore's signer from the request as received, as AWS would verify it.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import botocore.session
import msgspec
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as AwsKeys
from botocore.model import OperationModel, Shape
from botocore.serialize import create_serializer
from botocore.validate import ParamValidator

from orqen_common.canonical import TokenUsage
from orqen_common.errors import OrqenError
from orqen_common.formats.bedrock_eventstream import encode_frame, event_frame, exception_frame
from orqen_common.formats.openai import ChatCompletionChunk, ChatRequest, decode_request
from orqen_dispatch.providers.base import StreamState, UpstreamError
from orqen_dispatch.providers.bedrock import BedrockConverse
from orqen_testing.mock_upstream import MockResponse, MockUpstream, SentRequest

REGION = "us-west-2"
KEY_ID, SECRET = "AKIDOPERATOR", "operator/Secret+Key"
MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
ARN = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-haiku-20241022-v1:0"
PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
TIME_TOOL = {"type": "function", "function": {"name": "get_time"}}
USAGE = {
    "inputTokens": 32,
    "outputTokens": 7,
    "totalTokens": 49,
    "cacheReadInputTokens": 10,
    "cacheWriteInputTokens": 0,
}
CANONICAL_USAGE = {
    "prompt_tokens": 42,
    "completion_tokens": 7,
    "total_tokens": 49,
    "prompt_tokens_details": {"cached_tokens": 10},
}

# --- the wire check: botocore's own service model, serialiser and signer ---------------------

_SERVICE = botocore.session.get_session().get_service_model("bedrock-runtime")


def _with_blob_bytes(value: Any, shape: Shape) -> Any:
    """JSON carries blobs as base64 strings; boto3 callers pass bytes, which the validator wants."""
    if shape.type_name == "blob" and isinstance(value, str):
        return base64.b64decode(value, validate=True)
    if shape.type_name == "structure" and isinstance(value, dict) and not shape.is_document_type:
        return {k: _with_blob_bytes(v, shape.members[k]) if k in shape.members else v for k, v in value.items()}
    if shape.type_name == "list" and isinstance(value, list):
        return [_with_blob_bytes(v, shape.member) for v in value]
    if shape.type_name == "map" and isinstance(value, dict):
        return {k: _with_blob_bytes(v, shape.value) for k, v in value.items()}
    return value


def check_wire(request: SentRequest, model: str, operation: str) -> dict[str, Any]:
    """The body of `request`, after botocore confirmed it is the `operation` request boto3 would send."""
    op: OperationModel = _SERVICE.operation_model(operation)
    body = json.loads(request.content)
    params = _with_blob_bytes({**body, "modelId": model}, op.input_shape)
    report = ParamValidator().validate(params, op.input_shape)
    assert not report.has_errors(), report.generate_report()
    expected = create_serializer("rest-json").serialize_to_request(params, op)
    assert request.method == expected["method"]
    assert request.url.raw_path == expected["url_path"]
    assert json.loads(expected["body"]) == body
    assert request.headers["content-type"] == "application/json"
    return body


def verify_sigv4(request: SentRequest, keys: AwsKeys, region: str) -> None:
    """Recompute the signature from the request as received (its own X-Amz-Date), as AWS does."""
    scheme, _, fields = request.headers["authorization"].partition(" ")
    assert scheme == "AWS4-HMAC-SHA256"
    parts = dict(item.strip().split("=", 1) for item in fields.split(","))
    signed = parts["SignedHeaders"].split(";")
    assert {"host", "content-type", "x-amz-date"} <= set(signed)
    if keys.token:
        assert "x-amz-security-token" in signed and request.headers["x-amz-security-token"] == keys.token
    amz_date = request.headers["x-amz-date"]
    assert parts["Credential"] == f"{keys.access_key}/{amz_date[:8]}/{region}/bedrock/aws4_request"
    received = AWSRequest(
        method=request.method,
        url=str(request.url),
        data=request.content,
        headers={name: request.headers[name] for name in signed},
    )
    received.context["timestamp"] = amz_date
    signer = SigV4Auth(keys, "bedrock", region)
    string_to_sign = signer.string_to_sign(received, signer.canonical_request(received))
    assert signer.signature(string_to_sign, received) == parts["Signature"]


# --- a mock Bedrock ---------------------------------------------------------------------------


@dataclass
class MockBedrock:
    """Records each request and answers with what the test queued (a response or a factory)."""

    answers: list[MockResponse | Callable[[SentRequest], Awaitable[MockResponse]]] = field(default_factory=list)
    requests: list[SentRequest] = field(default_factory=list)

    async def handle(self, request: SentRequest) -> MockResponse:
        self.requests.append(request)
        answer = self.answers.pop(0)
        return answer if isinstance(answer, MockResponse) else await answer(request)

    def provider(self, **overrides: Any) -> BedrockConverse:
        settings: dict[str, Any] = {
            "endpoint_url": None,
            "region": REGION,
            "access_key_id": KEY_ID,
            "secret_access_key": SECRET,
            "session_token": None,
            "bearer_token": None,
            **overrides,
        }
        client = MockUpstream(self.handle)
        return BedrockConverse("bedrock", client, **settings)


def converse_answer(content: list[dict[str, Any]], stop_reason: str = "end_turn") -> MockResponse:
    body = {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop_reason,
        "usage": USAGE,
        "metrics": {"latencyMs": 12},
    }
    return MockResponse(200, json=body, headers={"x-amzn-requestid": "req-123"})


def event_stream(frames: list[bytes], piece: int = 7) -> MockResponse:
    """A ConverseStream answer whose bytes arrive in small pieces that split frames and headers."""
    data = b"".join(frames)

    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(data), piece):
            yield data[start : start + piece]

    headers = {"content-type": "application/vnd.amazon.eventstream", "x-amzn-requestid": "req-s"}
    return MockResponse(200, headers=headers, content=pieces())


def frame(event_type: str, payload: dict[str, Any]) -> bytes:
    """One ConverseStream event as Bedrock frames it, its JSON written here rather than by Orqen's types."""
    return event_frame(event_type, json.dumps(payload).encode())


def chat(*messages: dict[str, Any], **fields: Any) -> ChatRequest:
    """The canonical request as dispatch receives it."""
    return decode_request(json.dumps({"model": f"bedrock/{MODEL}", "messages": list(messages), **fields}).encode())


def chunk_dicts(chunks: list[ChatCompletionChunk]) -> list[dict[str, Any]]:
    """The chunks as the edge reads them off the wire."""
    return [json.loads(msgspec.json.encode(c)) for c in chunks]


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


async def converse_body_of(canonical: ChatRequest, model: str = MODEL) -> dict[str, Any]:
    """The Converse body the translator sends for `canonical`, checked by botocore."""
    bedrock = MockBedrock([converse_answer([{"text": "ok"}])])
    await bedrock.provider().complete(canonical, model, {})
    return check_wire(bedrock.requests[0], model, "Converse")


@pytest.mark.parametrize("schema", [{}, None])
async def test_a_tool_with_an_empty_or_null_schema_gets_an_empty_object_one(schema: Any) -> None:
    body = await converse_body_of(
        chat(user("hi"), tools=[{"type": "function", "function": {"name": "now", "parameters": schema}}])
    )
    assert body["toolConfig"]["tools"] == [
        {"toolSpec": {"name": "now", "inputSchema": {"json": {"type": "object", "properties": {}}}}}
    ]


async def test_a_tools_schema_goes_to_bedrock_as_the_caller_wrote_it() -> None:
    schema = b'{ "type" : "object", "required": [], "properties": {"q": {"type": "string"}} }'
    body = b'{"model": "bedrock/' + MODEL.encode() + b'", "messages": [{"role": "user", "content": "hi"}], '
    body += b'"tools": [{"type": "function", "function": {"name": "f", "parameters": ' + schema + b"}}]}"
    bedrock = MockBedrock([converse_answer([{"text": "ok"}])])
    await bedrock.provider().complete(decode_request(body), MODEL, {})
    assert b'"inputSchema":{"json":' + schema + b"}" in bedrock.requests[0].content


async def refusal_of(canonical: ChatRequest) -> str:
    bedrock = MockBedrock()
    with pytest.raises(OrqenError) as err:
        await bedrock.provider().complete(canonical, MODEL, {})
    assert err.value.http_status == 400 and not bedrock.requests
    return err.value.message


# --- requests ------------------------------------------------------------------------------


async def test_system_apart_and_turns_merged_into_strict_alternation() -> None:
    body = await converse_body_of(
        chat(
            {
                "role": "system",
                "content": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
            },
            {"role": "developer", "content": "Answer in English."},
            user("hello"),
            user([{"type": "text", "text": "are you there?"}]),
            {"role": "assistant", "content": "Yes."},
            {"role": "assistant", "content": [{"type": "text", "text": "How can I help?"}]},
            {"role": "assistant", "content": ""},
            user("tell me a joke"),
        )
    )
    assert body["system"] == [
        {"text": "Be brief."},
        {"cachePoint": {"type": "default"}},
        {"text": "Answer in English."},
    ]
    assert body["messages"] == [
        {"role": "user", "content": [{"text": "hello"}, {"text": "are you there?"}]},
        {"role": "assistant", "content": [{"text": "Yes."}, {"text": "How can I help?"}]},
        {"role": "user", "content": [{"text": "tell me a joke"}]},
    ]
    assert "toolConfig" not in body and "inferenceConfig" not in body


async def test_a_conversation_must_start_with_a_user_turn() -> None:
    message = await refusal_of(chat({"role": "assistant", "content": "Hi!"}, user("hello")))
    assert "start with a user message" in message


@pytest.mark.parametrize(
    ("tool_choice", "wire_choice"),
    [
        (None, None),
        ("auto", {"auto": {}}),
        ("required", {"any": {}}),
        ({"type": "function", "function": {"name": "get_time"}}, {"tool": {"name": "get_time"}}),
    ],
)
async def test_tools_and_tool_choice(tool_choice: Any, wire_choice: dict[str, Any] | None) -> None:
    fields: dict[str, Any] = {"tools": [{**WEATHER_TOOL, "cache_control": {"type": "ephemeral"}}, TIME_TOOL]}
    if tool_choice is not None:
        fields["tool_choice"] = tool_choice
    body = await converse_body_of(chat(user("weather?"), **fields))
    expected: dict[str, Any] = {
        "tools": [
            {
                "toolSpec": {
                    "name": "get_weather",
                    "description": "Weather in a city",
                    "inputSchema": {"json": WEATHER_TOOL["function"]["parameters"]},  # type: ignore[index]
                }
            },
            {"cachePoint": {"type": "default"}},
            {"toolSpec": {"name": "get_time", "inputSchema": {"json": {"type": "object", "properties": {}}}}},
        ]
    }
    if wire_choice is not None:
        expected["toolChoice"] = wire_choice
    assert body["toolConfig"] == expected


async def test_tool_choice_none_drops_the_tools_but_cannot_hide_tool_history() -> None:
    body = await converse_body_of(chat(user("hi"), tools=[WEATHER_TOOL], tool_choice="none"))
    assert "toolConfig" not in body
    history = [
        user("weather?"),
        {"role": "assistant", "tool_calls": [_call("t1", "get_weather", '{"city":"Oslo"}')]},
        {"role": "tool", "tool_call_id": "t1", "content": "rain"},
    ]
    message = await refusal_of(chat(*history, tools=[WEATHER_TOOL], tool_choice="none"))
    assert message == "tool_choice 'none' with tool history is not supported by Bedrock Converse."


def _call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


async def test_parallel_tool_calls_and_their_results_become_one_user_turn() -> None:
    body = await converse_body_of(
        chat(
            user("weather in Oslo and Rome, and the time?"),
            {
                "role": "assistant",
                "content": "Let me check.",
                "tool_calls": [
                    _call("tooluse_0", "get_weather", '{"city": "Oslo"}'),
                    _call("tooluse_1", "get_weather", '{"city": "Rome"}'),
                    _call("tooluse_2", "get_time", ""),
                ],
            },
            {"role": "tool", "tool_call_id": "tooluse_0", "content": "rain"},
            {
                "role": "tool",
                "tool_call_id": "tooluse_1",
                "content": [{"type": "text", "text": "sun"}],
                "is_error": True,
            },
            {"role": "tool", "tool_call_id": "tooluse_2", "content": ""},
            user("thanks, summarise"),
            tools=[WEATHER_TOOL, TIME_TOOL],
            parallel_tool_calls=True,
        )
    )
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][1]["content"] == [
        {"text": "Let me check."},
        {"toolUse": {"toolUseId": "tooluse_0", "name": "get_weather", "input": {"city": "Oslo"}}},
        {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Rome"}}},
        {"toolUse": {"toolUseId": "tooluse_2", "name": "get_time", "input": {}}},
    ]
    assert body["messages"][2]["content"] == [
        {"toolResult": {"toolUseId": "tooluse_0", "content": [{"text": "rain"}]}},
        {"toolResult": {"toolUseId": "tooluse_1", "content": [{"text": "sun"}], "status": "error"}},
        {"toolResult": {"toolUseId": "tooluse_2", "content": []}},
        {"text": "thanks, summarise"},
    ]
    assert "parallel_tool_calls" not in json.dumps(body)


async def test_tool_call_arguments_that_are_not_json_name_the_tool() -> None:
    message = await refusal_of(
        chat(
            user("weather?"),
            {"role": "assistant", "tool_calls": [_call("t1", "get_weather", "{city: Oslo")]},
            {"role": "tool", "tool_call_id": "t1", "content": "rain"},
            tools=[WEATHER_TOOL],
        )
    )
    assert "get_weather" in message and "not valid JSON" in message


async def test_tool_history_without_tools_is_refused_because_converse_rejects_it() -> None:
    message = await refusal_of(
        chat(
            user("weather?"),
            {"role": "assistant", "tool_calls": [_call("t1", "get_weather", "{}")]},
            {"role": "tool", "tool_call_id": "t1", "content": "rain"},
        )
    )
    assert "without tools" in message and "Bedrock Converse" in message


async def test_images_go_as_base64_blobs_and_image_urls_are_refused() -> None:
    image = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}}
    body = await converse_body_of(chat(user([{"type": "text", "text": "what is this?"}, image])))
    assert body["messages"][0]["content"][1] == {"image": {"format": "png", "source": {"bytes": PNG_B64}}}
    url_image = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    message = await refusal_of(chat(user([url_image])))
    assert message == "Image URLs is not supported by Bedrock Converse (send the image as base64)."
    bmp = {"type": "image_url", "image_url": {"url": f"data:image/bmp;base64,{PNG_B64}"}}
    assert "image/bmp" in await refusal_of(chat(user([bmp])))


async def test_inference_config_extensions_and_metadata() -> None:
    body = await converse_body_of(
        chat(
            user("hi"),
            max_tokens=99,
            max_completion_tokens=50,
            temperature=0.3,
            top_p=0.9,
            stop=["END", "STOP"],
            top_k=40,
            thinking={"type": "enabled", "budget_tokens": 1024},
            anthropic_beta=["token-efficient-tools-2025-02-19"],
            user="user-42@example.com",
            seed=7,
            store=True,
            metadata={"k": "v"},
            service_tier="auto",
            stream_options={"include_usage": True},
            reasoning_effort="low",
            n=1,
            frequency_penalty=0,
        )
    )
    assert body["inferenceConfig"] == {
        "maxTokens": 50,
        "temperature": 0.3,
        "topP": 0.9,
        "stopSequences": ["END", "STOP"],
    }
    assert body["additionalModelRequestFields"] == {
        "top_k": 40,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "anthropic_beta": ["token-efficient-tools-2025-02-19"],
    }
    assert body["requestMetadata"] == {"user": "user-42@example.com"}
    assert set(body) == {"messages", "inferenceConfig", "additionalModelRequestFields", "requestMetadata"}


async def test_a_single_stop_string_and_a_user_the_metadata_pattern_rejects() -> None:
    body = await converse_body_of(chat(user("hi"), stop="END", max_tokens=10, user="naïve <user>"))
    assert body["inferenceConfig"] == {"maxTokens": 10, "stopSequences": ["END"]}
    assert "requestMetadata" not in body


@pytest.mark.parametrize(
    ("fields", "feature"),
    [
        ({"n": 2}, "n > 1"),
        ({"logprobs": True}, "logprobs"),
        ({"response_format": {"type": "json_object"}}, "response_format 'json_object'"),
        ({"response_format": {"type": "json_schema", "json_schema": {}}}, "response_format 'json_schema'"),
        ({"audio": {"voice": "alloy", "format": "wav"}}, "Audio output"),
        ({"logit_bias": {"50256": -100}}, "logit_bias"),
        ({"frequency_penalty": 0.5}, "frequency_penalty"),
        ({"presence_penalty": -0.2}, "presence_penalty"),
    ],
)
async def test_features_converse_cannot_express_are_refused_by_name(fields: dict[str, Any], feature: str) -> None:
    message = await refusal_of(chat(user("hi"), **fields))
    assert feature in message and message.endswith("is not supported by Bedrock Converse.")


async def test_a_legacy_function_message_is_refused_by_name() -> None:
    message = await refusal_of(chat(user("hi"), {"role": "function", "name": "f", "content": "42"}))
    assert message == "A message of role 'function' (legacy functions; use tools) is not supported by Bedrock Converse."


async def test_an_arn_model_id_is_percent_encoded_as_botocore_does_and_signed_that_way() -> None:
    bedrock = MockBedrock([converse_answer([{"text": "ok"}])])
    result = await bedrock.provider().complete(chat(user("hi")), ARN, {})
    request = bedrock.requests[0]
    check_wire(request, ARN, "Converse")  # the path equals botocore's serialised url_path
    assert request.url.host == f"bedrock-runtime.{REGION}.amazonaws.com"
    assert request.url.raw_path == (
        "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile"
        "%2Fus.anthropic.claude-3-5-haiku-20241022-v1%3A0/converse"
    )
    verify_sigv4(request, AwsKeys(KEY_ID, SECRET), REGION)
    assert result.body.model == ARN


# --- credentials ----------------------------------------------------------------------------


async def test_operator_iam_keys_sign_with_sigv4_including_the_session_token() -> None:
    bedrock = MockBedrock([converse_answer([{"text": "ok"}])])
    await bedrock.provider(session_token="operator-session").complete(chat(user("hi")), MODEL, {})
    request = bedrock.requests[0]
    verify_sigv4(request, AwsKeys(KEY_ID, SECRET, "operator-session"), REGION)
    # A signature over anything else fails: the check above is not vacuous.
    with pytest.raises(AssertionError):
        verify_sigv4(request, AwsKeys(KEY_ID, "another secret", "operator-session"), REGION)
    tampered = SentRequest(request.method, request.url, request.headers, request.content + b" ")
    with pytest.raises(AssertionError):
        verify_sigv4(tampered, AwsKeys(KEY_ID, SECRET, "operator-session"), REGION)


async def test_operator_bearer_token_wins_over_operator_keys() -> None:
    bedrock = MockBedrock([converse_answer([{"text": "ok"}])])
    await bedrock.provider(bearer_token="ABSK-operator").complete(chat(user("hi")), MODEL, {})
    request = bedrock.requests[0]
    assert request.headers["authorization"] == "Bearer ABSK-operator"
    assert "x-amz-date" not in request.headers and "x-amz-security-token" not in request.headers


async def test_request_credentials_and_region_win_over_the_operators() -> None:
    bedrock = MockBedrock([converse_answer([{"text": "ok"}]) for _ in range(2)])
    provider = bedrock.provider(bearer_token="ABSK-operator")
    caller_keys = {
        "aws_access_key_id": "AKIDCALLER",
        "aws_secret_access_key": "caller-secret",
        "aws_session_token": "caller-session",
        "aws_region_name": "eu-central-1",
    }
    await provider.complete(chat(user("hi")), MODEL, caller_keys)
    request = bedrock.requests[0]
    assert request.url.host == "bedrock-runtime.eu-central-1.amazonaws.com"
    verify_sigv4(request, AwsKeys("AKIDCALLER", "caller-secret", "caller-session"), "eu-central-1")

    await provider.complete(chat(user("hi")), MODEL, {**caller_keys, "aws_bearer_token_bedrock": "ABSK-caller"})
    assert bedrock.requests[1].headers["authorization"] == "Bearer ABSK-caller"


async def test_request_keys_override_operator_keys_and_never_borrow_the_operators_session_token() -> None:
    bedrock = MockBedrock([converse_answer([{"text": "ok"}])])
    provider = bedrock.provider(session_token="operator-session")
    await provider.complete(chat(user("hi")), MODEL, {"aws_access_key_id": "AKIDC", "aws_secret_access_key": "s"})
    request = bedrock.requests[0]
    assert "x-amz-security-token" not in request.headers
    verify_sigv4(request, AwsKeys("AKIDC", "s"), REGION)


async def test_no_credentials_anywhere_is_a_401_that_says_where_they_come_from() -> None:
    bedrock = MockBedrock()
    provider = bedrock.provider(access_key_id=None, secret_access_key=None)
    with pytest.raises(UpstreamError) as err:
        await provider.complete(chat(user("hi")), MODEL, {})
    assert err.value.status == 401
    for setting in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_BEARER_TOKEN_BEDROCK", "aws_access_key_id"):
        assert setting in err.value.message
    assert not bedrock.requests


@pytest.mark.parametrize(
    "credentials",
    [
        {"aws_access_key_id": "AKIDONLY"},
        {"aws_region_name": "evil.example.com/"},
        {"aws_bearer_token_bedrock": "token\r\nX-Injected: 1"},
    ],
)
async def test_unusable_request_credentials_are_a_400(credentials: dict[str, str]) -> None:
    bedrock = MockBedrock()
    with pytest.raises(OrqenError) as err:
        await bedrock.provider().complete(chat(user("hi")), MODEL, credentials)
    assert err.value.http_status == 400 and not bedrock.requests


async def test_endpoint_url_replaces_the_regional_host() -> None:
    bedrock = MockBedrock([converse_answer([{"text": "ok"}])])
    await bedrock.provider(endpoint_url="http://localhost:4566/").complete(chat(user("hi")), MODEL, {})
    request = bedrock.requests[0]
    assert str(request.url) == f"http://localhost:4566/model/{MODEL.replace(':', '%3A')}/converse"
    verify_sigv4(request, AwsKeys(KEY_ID, SECRET), REGION)


# --- answers --------------------------------------------------------------------------------


async def test_answer_text_tool_calls_usage_and_id() -> None:
    bedrock = MockBedrock(
        [
            converse_answer(
                [
                    {"reasoningContent": {"reasoningText": {"text": "hmm", "signature": "sig"}}},
                    {"text": "Let me check."},
                    {"toolUse": {"toolUseId": "tooluse_0", "name": "get_weather", "input": {"city": "Oslo"}}},
                    {"toolUse": {"toolUseId": "tooluse_1", "name": "get_time", "input": {}}},
                ],
                stop_reason="tool_use",
            )
        ]
    )
    result = await bedrock.provider().complete(chat(user("weather?"), tools=[WEATHER_TOOL, TIME_TOOL]), MODEL, {})
    body = json.loads(msgspec.json.encode(result.body))  # as the edge reads it
    assert body["id"] == "bedrock-req-123" and body["object"] == "chat.completion" and body["model"] == MODEL
    assert body["choices"] == [
        {
            "index": 0,
            "logprobs": None,
            "message": {
                "role": "assistant",
                "content": "Let me check.",
                "tool_calls": [
                    _call("tooluse_0", "get_weather", '{"city":"Oslo"}'),
                    _call("tooluse_1", "get_time", "{}"),
                ],
            },
            "finish_reason": "tool_calls",
        }
    ]
    assert body["usage"] == CANONICAL_USAGE
    assert result.usage == TokenUsage(input=32, output=7, cache_read=10, cache_write=0)
    assert result.status == 200


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("guardrail_intervened", "content_filter"),
        ("content_filtered", "content_filter"),
        ("model_context_window_exceeded", "length"),
    ],
)
async def test_stop_reasons_become_finish_reasons(stop_reason: str, finish: str) -> None:
    bedrock = MockBedrock([converse_answer([{"text": "one two "}], stop_reason)])
    result = await bedrock.provider().complete(chat(user("stop at WORD"), stop="WORD"), MODEL, {})
    choice = json.loads(msgspec.json.encode(result.body))["choices"][0]
    assert choice["finish_reason"] == finish
    # Converse does not say which sequence stopped it; with only one asked for, it is known.
    assert choice.get("stop_sequence") == ("WORD" if stop_reason == "stop_sequence" else None)


async def test_an_answer_without_text_has_null_content() -> None:
    bedrock = MockBedrock([converse_answer([{"toolUse": {"toolUseId": "t", "name": "get_time", "input": {}}}])])
    result = await bedrock.provider().complete(chat(user("time?"), tools=[TIME_TOOL]), MODEL, {})
    assert result.body.choices[0].message.content is None


async def test_a_429_keeps_status_message_and_retry_after() -> None:
    throttled = MockResponse(
        429,
        json={"message": "Too many requests, please wait before trying again."},
        headers={"x-amzn-errortype": "ThrottlingException:http://internal.amazon.com/coral/", "retry-after": "7"},
    )
    bedrock = MockBedrock([throttled, throttled])
    provider = bedrock.provider()
    with pytest.raises(UpstreamError) as err:
        await provider.complete(chat(user("hi")), MODEL, {})
    assert (err.value.status, err.value.retry_after) == (429, 7.0)
    assert err.value.message == "Too many requests, please wait before trying again."
    with pytest.raises(UpstreamError) as stream_err:
        [c async for c in provider.stream(chat(user("hi"), stream=True), MODEL, {}, StreamState())]
    assert (stream_err.value.status, stream_err.value.retry_after) == (429, 7.0)


# --- streams --------------------------------------------------------------------------------


def _tool_start(block: int, call_id: str, name: str) -> bytes:
    start = {"toolUse": {"toolUseId": call_id, "name": name}}
    return frame("contentBlockStart", {"contentBlockIndex": block, "start": start})


def _tool_delta(block: int, fragment: str) -> bytes:
    return frame("contentBlockDelta", {"contentBlockIndex": block, "delta": {"toolUse": {"input": fragment}}})


def _tool_frames(block: int, call_id: str, name: str, fragments: list[str]) -> list[bytes]:
    return [
        _tool_start(block, call_id, name),
        *(_tool_delta(block, fragment) for fragment in fragments),
        frame("contentBlockStop", {"contentBlockIndex": block}),
    ]


def _text_frames(block: int, words: list[str]) -> list[bytes]:
    return [
        *(frame("contentBlockDelta", {"contentBlockIndex": block, "delta": {"text": w}}) for w in words),
        frame("contentBlockStop", {"contentBlockIndex": block}),
    ]


def _stream_frames() -> list[bytes]:
    return [
        frame("messageStart", {"role": "assistant"}),
        frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "hmm"}}}),
        frame("contentBlockStop", {"contentBlockIndex": 0}),
        *_text_frames(1, ["Let ", "me ", "check."]),
        *_tool_frames(2, "tooluse_0", "get_weather", ['{"ci', 'ty": "O', 'slo"}']),
        *_tool_frames(3, "tooluse_1", "get_weather", ['{"city"', ': "Ro', 'me"}']),
        frame("messageStop", {"stopReason": "tool_use"}),
        frame("metadata", {"usage": USAGE, "metrics": {"latencyMs": 40}}),
    ]


async def test_stream_of_text_and_two_tool_calls_with_fragmented_input() -> None:
    bedrock = MockBedrock([event_stream(_stream_frames())])
    state = StreamState()
    canonical = chat(user("weather in Oslo and Rome?"), tools=[WEATHER_TOOL], stream=True)
    chunks = chunk_dicts([c async for c in bedrock.provider().stream(canonical, MODEL, {}, state)])
    check_wire(bedrock.requests[0], MODEL, "ConverseStream")
    assert bedrock.requests[0].url.path.endswith("/converse-stream")
    verify_sigv4(bedrock.requests[0], AwsKeys(KEY_ID, SECRET), REGION)

    assert all(c["id"] == "bedrock-req-s" and c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant"}
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert "".join(d.get("content", "") for d in deltas) == "Let me check."
    calls: dict[int, dict[str, str]] = {}
    for d in deltas:
        for call in d.get("tool_calls", []):
            if "id" in call:
                assert call["index"] not in calls and call["type"] == "function"
                calls[call["index"]] = {"id": call["id"], "name": call["function"]["name"], "arguments": ""}
            calls[call["index"]]["arguments"] += call["function"]["arguments"]
    assert calls == {
        0: {"id": "tooluse_0", "name": "get_weather", "arguments": '{"city": "Oslo"}'},
        1: {"id": "tooluse_1", "name": "get_weather", "arguments": '{"city": "Rome"}'},
    }
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == CANONICAL_USAGE
    assert state.status == 200 and state.usage == TokenUsage(input=32, output=7, cache_read=10, cache_write=0)


async def test_interleaved_tool_blocks_keep_their_own_fragments() -> None:
    frames = [
        frame("messageStart", {"role": "assistant"}),
        _tool_start(0, "a", "x"),
        _tool_start(1, "b", "y"),
        _tool_delta(1, '{"b":'),
        _tool_delta(0, '{"a":1}'),
        _tool_delta(1, "2}"),
        frame("messageStop", {"stopReason": "tool_use"}),
        frame("metadata", {"usage": USAGE}),
    ]
    bedrock = MockBedrock([event_stream(frames)])
    chunks = chunk_dicts(
        [c async for c in bedrock.provider().stream(chat(user("go"), stream=True), MODEL, {}, StreamState())]
    )
    arguments: dict[int, str] = {}
    for c in chunks:
        for call in c["choices"][0]["delta"].get("tool_calls", []) if c["choices"] else []:
            arguments[call["index"]] = arguments.get(call["index"], "") + call["function"]["arguments"]
    assert arguments == {0: '{"a":1}', 1: '{"b":2}'}


async def test_chunks_are_yielded_as_frames_arrive() -> None:
    first_seen = asyncio.Event()

    async def gated_body() -> AsyncIterator[bytes]:
        yield frame("messageStart", {"role": "assistant"})
        yield frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "first"}})
        await first_seen.wait()  # the rest exists only once the first text reached the consumer
        yield b"".join(_text_frames(0, [" second"]))
        yield frame("messageStop", {"stopReason": "end_turn"})
        yield frame("metadata", {"usage": USAGE})

    async def answer(request: SentRequest) -> MockResponse:
        return MockResponse(200, content=gated_body())

    bedrock = MockBedrock([answer])
    texts: list[str] = []

    async def consume() -> None:
        async for chunk in bedrock.provider().stream(chat(user("hi"), stream=True), MODEL, {}, StreamState()):
            if chunk.choices and isinstance(chunk.choices[0].delta.content, str):
                texts.append(chunk.choices[0].delta.content)
                first_seen.set()

    await asyncio.wait_for(consume(), timeout=30)  # a buffering translator would wait forever
    assert texts == ["first", " second"]


@pytest.mark.parametrize(
    ("exception_type", "status"),
    [
        ("throttlingException", 429),
        ("validationException", 400),
        ("modelStreamErrorException", 502),
        ("serviceUnavailableException", 503),
        ("internalServerException", 500),
        ("somethingNewException", 502),
    ],
)
async def test_an_exception_frame_mid_stream_raises_with_its_status(exception_type: str, status: int) -> None:
    frames = [
        frame("messageStart", {"role": "assistant"}),
        *_text_frames(0, ["one ", "two "])[:2],
        exception_frame(exception_type, "Too many tokens, please wait before trying again."),
        frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "never"}}),
    ]
    bedrock = MockBedrock([event_stream(frames)])
    received: list[ChatCompletionChunk] = []
    with pytest.raises(UpstreamError) as err:
        async for chunk in bedrock.provider().stream(chat(user("hi"), stream=True), MODEL, {}, StreamState()):
            received.append(chunk)
    assert (err.value.status, err.value.message) == (status, "Too many tokens, please wait before trying again.")
    assert [c["choices"][0]["delta"].get("content") for c in chunk_dicts(received)] == [None, "one ", "two "]


async def test_an_error_frame_raises_with_its_code_and_message() -> None:
    error = encode_frame({":message-type": "error", ":error-code": "InternalFailure", ":error-message": "boom"}, b"")
    bedrock = MockBedrock([event_stream([frame("messageStart", {"role": "assistant"}), error])])
    with pytest.raises(UpstreamError) as err:
        [c async for c in bedrock.provider().stream(chat(user("hi"), stream=True), MODEL, {}, StreamState())]
    assert (err.value.status, err.value.message) == (502, "boom")


async def test_a_stream_that_ends_without_metadata_is_a_502() -> None:
    frames = [frame("messageStart", {"role": "assistant"}), *_text_frames(0, ["hi"])]
    bedrock = MockBedrock([event_stream(frames)])
    with pytest.raises(UpstreamError) as err:
        [c async for c in bedrock.provider().stream(chat(user("hi"), stream=True), MODEL, {}, StreamState())]
    assert err.value.status == 502 and "usage" in err.value.message


async def test_a_corrupt_frame_is_a_502() -> None:
    corrupt = bytearray(frame("messageStart", {"role": "assistant"}))
    corrupt[-1] ^= 0xFF  # break the message CRC
    bedrock = MockBedrock([event_stream([bytes(corrupt)])])
    with pytest.raises(UpstreamError) as err:
        [c async for c in bedrock.provider().stream(chat(user("hi"), stream=True), MODEL, {}, StreamState())]
    assert err.value.status == 502


async def test_a_stream_stopped_by_its_single_stop_sequence_names_it() -> None:
    frames = [
        frame("messageStart", {"role": "assistant"}),
        *_text_frames(0, ["one ", "two "]),
        frame("messageStop", {"stopReason": "stop_sequence"}),
        frame("metadata", {"usage": USAGE}),
    ]
    bedrock = MockBedrock([event_stream(frames)])
    canonical = chat(user("stop at WORD"), stop=["WORD"], stream=True)
    chunks = chunk_dicts([c async for c in bedrock.provider().stream(canonical, MODEL, {}, StreamState())])
    finish = chunks[-2]["choices"][0]
    assert (finish["finish_reason"], finish["stop_sequence"]) == ("stop", "WORD")
