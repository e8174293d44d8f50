import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace

import grpc
import orjson
import pytest

from orqen.v1 import common_pb2, dispatch_pb2, events_pb2, optimizer_pb2
from orqen_common.errors import OrqenError
from orqen_common.formats.openai import (
    ChatCompletionChunk,
    ChatRequest,
    chunk_decoder,
    completion_decoder,
    decode_request,
    encode,
    tool_name,
)
from orqen_edge.cache_control import requested_cache
from orqen_edge.errors import error_body, ingress_of
from orqen_edge.ingress.anthropic import translate as anthropic_translate
from orqen_edge.ingress.bedrock import parse_converse_path
from orqen_edge.ingress.bedrock import translate as bedrock_translate
from orqen_edge.ingress.openai import translate as openai_translate
from orqen_edge.ingress.pipeline import (
    ChatCall,
    _chunks,
    canonical_body,
    forwardable,
    new_call,
    pop_credentials,
    recorded_names,
    validate_chat,
)


def test_credentials_and_tool_examples_never_leave_the_edge() -> None:
    chat = {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "hi"}],
        "aws_access_key_id": "AKIA",
        "aws_region_name": "eu-west-1",
        "tools": [
            {
                "type": "function",
                "function": {"name": "f", "parameters": {"type": "object"}, "x-orqen-examples": ["call f"]},
            }
        ],
    }
    request = decode_request(orjson.dumps(chat))
    creds = pop_credentials(request)
    assert creds == {"aws_access_key_id": "AKIA", "aws_region_name": "eu-west-1"}
    sent = orjson.loads(forwardable(request))
    assert "aws_access_key_id" not in sent
    assert sent["tools"][0]["function"] == {"name": "f", "parameters": {"type": "object"}}
    assert request.tools and request.tools[0].function.examples == ["call f"]  # the request is not mutated


def test_the_optimizer_gets_the_callers_openai_body_unless_it_holds_credentials() -> None:
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function",
            "function": {"name": "f", "parameters": {"type": "object"}}}]}  # fmt: skip
    raw = orjson.dumps(body)
    assert canonical_body("openai", raw, decode_request(raw)) is raw
    with_key = orjson.dumps(body | {"aws_secret_access_key": "secret"})
    assert canonical_body("openai", with_key, decode_request(with_key)) is None
    chat, _ = anthropic_translate(orjson.dumps({"model": "claude", "max_tokens": 8, "messages": body["messages"]}))
    assert canonical_body("anthropic", raw, chat) is None


def test_unknown_openai_fields_go_on_as_they_came() -> None:
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "prediction": {"type": "content"}}
    assert orjson.loads(forwardable(decode_request(orjson.dumps(body)))) == body


def test_openais_custom_tools_and_allowed_tools_go_on_as_they_came() -> None:
    body = {
        "model": "gpt-5",
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [
            {"type": "custom", "custom": {"name": "grammar", "format": {"type": "text"}}},
            {"type": "function", "function": {"name": "f", "x-orqen-examples": ["call f"]}},
        ],
        "tool_choice": {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": [{"type": "custom"}]}},
    }
    request = decode_request(orjson.dumps(body))
    assert [tool_name(t) for t in request.tools or ()] == ["grammar", "f"]
    sent = orjson.loads(forwardable(request))
    assert sent["tools"] == [body["tools"][0], {"type": "function", "function": {"name": "f"}}]
    assert sent["tool_choice"] == body["tool_choice"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "Expected `object`, got `array`"),
        ({"messages": [{"role": "user", "content": "x"}]}, "`model`"),
        ({"model": "m"}, "`messages`"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": {}}, "`$.tools`"),
        ({"model": "m", "messages": [1, 2]}, "`$.messages[0]`"),
        ({"model": "m", "messages": [None]}, "`$.messages[0]`"),
        ({"model": "m", "messages": [["hi"]]}, "`$.messages[0]`"),
        ({"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}, "content[0].text"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream_options": 5}, "stream_options"),
    ],
)
def test_malformed_chat_requests_are_400_naming_the_field(body: object, message: str) -> None:
    with pytest.raises(OrqenError) as err:
        decode_request(orjson.dumps(body))
    assert err.value.http_status == 400 and message in err.value.message


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"model": "", "messages": [{"role": "user", "content": "x"}]}, "'model'"),
        ({"model": "m", "messages": []}, "'messages'"),
    ],
)
def test_empty_model_or_messages_are_400_with_a_reason(body: object, message: str) -> None:
    with pytest.raises(OrqenError) as err:
        validate_chat(decode_request(orjson.dumps(body)))
    assert err.value.http_status == 400 and message in err.value.message


def test_headers_describe_the_plan() -> None:
    call = ChatCall(runtime=None, context=None, model_requested="m", stream=False)  # type: ignore[arg-type]
    call.plan_stats = optimizer_pb2.PlanStats(tools_input=32, tools_output=8, routing="semantic")
    call.summary = dispatch_pb2.DispatchSummary(model="gpt-4o-2024-11-20")
    assert call.headers() == {
        "x-orqen-model": "gpt-4o-2024-11-20",
        "x-orqen-tools-input": "32",
        "x-orqen-tools-output": "8",
        "x-orqen-prune-ratio": "8/32",
        "x-orqen-routing": "semantic",
        "x-orqen-cache": "miss",
    }
    call.plan_stats = optimizer_pb2.PlanStats(tools_input=3, tools_output=3, routing="passthrough_small_toolset")
    assert call.headers()["x-orqen-routing"] == "passthrough_small_toolset"
    call.summary.cache = "hit"  # answered from the response cache
    assert call.headers()["x-orqen-cache"] == "hit"


@pytest.mark.parametrize(
    ("mode", "ttl", "expected"),
    [
        (None, None, ("", 0)),
        ("use", None, ("use", 0)),
        (" Refresh ", "60", ("refresh", 60)),
        ("skip", "604800", ("skip", 604800)),
    ],
)
def test_the_cache_headers_a_request_may_send(mode: str | None, ttl: str | None, expected: tuple[str, int]) -> None:
    assert requested_cache(mode, ttl) == expected


@pytest.mark.parametrize(
    ("mode", "ttl"), [("always", None), ("use", "0"), ("use", "604801"), ("use", "1e3"), ("use", "9" * 5000)]
)
def test_cache_headers_outside_their_values_are_400(mode: str, ttl: str | None) -> None:
    with pytest.raises(OrqenError) as err:
        requested_cache(mode, ttl)
    assert err.value.http_status == 400 and "x-orqen-cache" in err.value.message


HOSTILE_MODELS = [
    "gpt-4o-mini\u0000x",
    "gpt\u0001",
    "gpt-4o\nx-injected: 1",
    "gpt-4o-mini \U0001f600",
    "a" * 257,
    "m m",
]


@pytest.mark.parametrize("model", HOSTILE_MODELS)
def test_model_names_with_nul_control_or_non_ascii_characters_are_400_on_every_ingress(model: str) -> None:
    messages = [{"role": "user", "content": "x"}]
    converse_path = "/model/" + "".join(f"%{b:02X}" for b in model.encode()) + "/converse"
    model_id, _ = parse_converse_path(converse_path)
    for chat in (
        decode_request(orjson.dumps({"model": model, "messages": messages})),
        anthropic_translate(orjson.dumps({"model": model, "max_tokens": 5, "messages": messages}))[0],
        bedrock_translate(
            orjson.dumps({"messages": [{"role": "user", "content": [{"text": "x"}]}]}), model_id=model_id, stream=False
        )[0],
    ):
        with pytest.raises(OrqenError) as err:
            validate_chat(chat)
        assert err.value.http_status == 400 and "Invalid model" in err.value.message
        assert "\x00" not in err.value.message and "\n" not in err.value.message


def test_tool_names_and_credentials_with_control_characters_are_400() -> None:
    tool = {"type": "function", "function": {"name": "get\u0000weather"}}
    chat = decode_request(orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [tool]}))
    with pytest.raises(OrqenError, match="tools"):
        validate_chat(chat)
    with pytest.raises(OrqenError, match="aws_region_name") as err:
        pop_credentials(decode_request(orjson.dumps({"model": "m", "messages": [], "aws_region_name": "us\r\nx"})))
    assert "us" not in err.value.message.replace("aws_", "")  # a credential is never echoed
    with pytest.raises(OrqenError, match="x-orqen-provider-key"):
        pop_credentials(None, "sk-\u0001")


@pytest.mark.parametrize("session", ["s\u0000", "s\u0001", "caf\u00e9"])
def test_session_ids_outside_printable_ascii_are_400(session: str) -> None:
    with pytest.raises(OrqenError) as err:
        new_call(None, None, "req_1", "openai", session)  # type: ignore[arg-type]
    assert err.value.http_status == 400 and "x-orqen-session-id" in err.value.message


def test_header_values_are_made_header_safe() -> None:
    """The model in x-orqen-model comes from the provider's answer: it must never break the response."""
    call = ChatCall(runtime=None, context=None, model_requested="m", stream=False)  # type: ignore[arg-type]
    for answered, header in [
        ("gpt\u0000x", "gpt%00x"),
        ("gpt\r\nset-cookie: a", "gpt%0D%0Aset-cookie: a"),
        ("gpt-\U0001f600", "gpt-%F0%9F%98%80"),
        ("gpt-4o-2024-11-20", "gpt-4o-2024-11-20"),
    ]:
        call.summary = dispatch_pb2.DispatchSummary(model=answered)
        assert call.headers()["x-orqen-model"] == header
        header.encode("ascii")


def test_error_bodies_follow_each_sdk() -> None:
    err = OrqenError.of(grpc.StatusCode.RESOURCE_EXHAUSTED, "slow down")
    assert error_body(err, "openai") == {
        "error": {"message": "slow down", "type": "rate_limit_error", "param": None, "code": None}
    }
    assert error_body(err, "anthropic") == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "slow down"},
    }
    assert ingress_of("/v1/messages") == "anthropic"
    assert ingress_of("/model/anthropic.claude/converse") == "bedrock"
    assert ingress_of("/v1/chat/completions") == "openai"


def test_an_openai_compatible_answer_keeps_its_reasoning_and_logprobs() -> None:
    answer = {
        "id": "c",
        "object": "chat.completion",
        "created": 1,
        "model": "deepseek-reasoner",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "4", "reasoning_content": "2 + 2"},
                "finish_reason": "stop",
                "logprobs": {"content": []},
            }
        ],
    }
    completion = completion_decoder.decode(orjson.dumps(answer))
    assert orjson.loads(encode(completion)) == answer


class OrderedPublisher:
    """Notes, in order, each event published and each wait for its store."""

    def __init__(self) -> None:
        self.log: list[str] = []

    def publish(self, name: str, payload: bytes, msg_id: str) -> asyncio.Future[None]:
        self.log.append(f"published {msg_id}")
        stored: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        stored.set_result(None)
        return stored

    async def stored(self, event: asyncio.Future[None], within: float) -> bool:
        self.log.append("stored")
        return True


@pytest.mark.parametrize("batched", [True, False])
async def test_a_stream_ends_only_once_its_request_event_is_stored(batched: bool) -> None:
    """The format writes where its stream ends ([DONE] here) after the last chunk: by then the event is stored.

    Unbatched: a chunk a message, as a dispatch that predates batches sends it (a rolling upgrade).
    """
    publisher = OrderedPublisher()
    runtime = SimpleNamespace(publisher=publisher)
    context = common_pb2.RequestContext(request_id="req_1")
    call = ChatCall(runtime=runtime, context=context, model_requested="gpt-4o", stream=True)  # type: ignore[arg-type]
    chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o", "choices": []}
    summary = dispatch_pb2.DispatchSummary(model="gpt-4o")
    if batched:
        events = [dispatch_pb2.StreamEvent(chunks=[orjson.dumps(chunk)] * 2, summary=summary)]
    else:
        events = [dispatch_pb2.StreamEvent(chunk_json=orjson.dumps(chunk))] * 2
        events.append(dispatch_pb2.StreamEvent(summary=summary))

    async def upstream() -> AsyncIterator[dispatch_pb2.StreamEvent]:
        for event in events:
            yield event

    _, reply = openai_translate(
        orjson.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "stream": True})
    )
    parts = []
    async for part in reply.stream(_chunks(call, [], upstream())):
        parts.append((part, list(publisher.log)))
    assert parts[-1] == (b"data: [DONE]\n\n", ["published req_1", "stored"])
    assert all(log == [] for _, log in parts[:-1])
    assert b"".join(part for part, _ in parts[:-1]).count(b'"id":"c"') == 2 and call.summary.model == "gpt-4o"


def test_tool_names_longer_than_any_provider_takes_are_400() -> None:
    def chat(name: str) -> ChatRequest:
        tools = [{"type": "function", "function": {"name": name}}]
        body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": tools}
        return decode_request(orjson.dumps(body))

    validate_chat(chat("a" * 256))
    with pytest.raises(OrqenError, match="257 characters long; at most 256") as err:
        validate_chat(chat("a" * 257))
    assert err.value.http_status == 400


def test_the_request_event_of_a_request_with_tens_of_thousands_of_tools_fits_one_nats_message() -> None:
    """An event over NATS's 1 MB could never be published: the tool name lists are bounded."""
    published: list[bytes] = []

    class Publisher:
        def publish(self, name: str, payload: bytes, msg_id: str) -> None:
            published.append(payload)

    runtime = SimpleNamespace(publisher=Publisher())
    context = common_pb2.RequestContext(request_id="r")
    call = ChatCall(runtime=runtime, context=context, model_requested="m", stream=False)  # type: ignore[arg-type]
    names = [f"{i:05d}_" + "n" * 250 for i in range(50_000)]  # 12.8 MB of names
    call.tools_offered = call.tools_forwarded = call.tools_called = names
    call.record(200)
    event = events_pb2.RequestCompleted.FromString(published[0])
    assert len(published[0]) < 512 * 1024
    assert 400 < len(event.tools_offered) < 600 and list(event.tools_offered) == names[: len(event.tools_offered)]
    assert list(event.tools_forwarded) == list(event.tools_offered) == list(event.tools_called)
    few = ["get_weather", "get_time"]
    assert recorded_names(few) is few  # an ordinary request's names are recorded whole


def _stream_chunk(delta: dict[str, object], finish: str | None = None) -> dict[str, object]:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [choice]}


STREAM = [
    _stream_chunk({"role": "assistant", "content": "Hel"}),
    _stream_chunk({"content": "lo"}),
    _stream_chunk(
        {
            "tool_calls": [
                {"index": 0, "id": "call_1", "type": "function", "function": {"name": "look", "arguments": '{"q":'}}
            ]
        }
    ),
    _stream_chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}, "tool_calls"),
    {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [],
        "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
    },
]
STREAM_BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}


@pytest.mark.parametrize("ingress", ["openai", "openai-usage", "anthropic", "bedrock"])
async def test_chunks_that_come_together_are_written_together_and_read_the_same(
    ingress: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch of chunks from dispatch is one write to the client, the same bytes as one chunk a write."""
    monkeypatch.setattr("orqen_edge.ingress.bedrock.time", SimpleNamespace(perf_counter=lambda: 1.0))  # latency_ms

    def reply() -> object:
        if ingress.startswith("openai"):
            usage = {"stream_options": {"include_usage": True}} if ingress == "openai-usage" else {}
            return openai_translate(orjson.dumps(STREAM_BODY | usage))[1]
        if ingress == "anthropic":
            return anthropic_translate(orjson.dumps({**STREAM_BODY, "max_tokens": 8}))[1]
        converse = {"messages": [{"role": "user", "content": [{"text": "hi"}]}]}
        return bedrock_translate(orjson.dumps(converse), model_id="m", stream=True)[1]

    async def written(batches: list[list[dict[str, object]]]) -> list[bytes]:
        async def source() -> AsyncIterator[list[ChatCompletionChunk]]:
            for batch in batches:
                yield [chunk_decoder.decode(orjson.dumps(chunk)) for chunk in batch]

        return [part async for part in reply().stream(source())]  # type: ignore[attr-defined]

    paced = await written([[chunk] for chunk in STREAM])
    together = await written([STREAM[:1], STREAM[1:]])
    assert b"".join(together) == b"".join(paced)
    # The first batch is the first write either way; the second batch's four chunks are one write.
    assert together[0] == paced[0] and len(together) < len(paced) - 1
