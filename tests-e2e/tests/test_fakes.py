"""The fake upstreams on their own: each speaks, and enforces, its provider's real wire format.

Requests go through the official SDKs (openai, anthropic, boto3) where they can express
them, and through plain httpx where a test needs a request no SDK would send. No Orqen
stack is involved.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import anthropic
import boto3
import httpx
import openai
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError, EventStreamError

from fakes.anthropic_upstream import FakeAnthropic
from fakes.bedrock_upstream import FakeBedrock
from fakes.model_lists import ANTHROPIC_MODELS, BEDROCK_MODELS, BEDROCK_PROFILES, OPENAI_MODELS
from fakes.openai_upstream import FakeOpenAI
from fakes.scenario import Conversation, Fault, Turn, decide, json_fragments, text_fragments
from fakes.serve import BackgroundServer

OPENAI_KEY = "sk-fake-openai"
ANTHROPIC_KEY = "sk-ant-fake"
AWS_KEY_ID = "AKIAFAKESCENARIO0001"
AWS_SECRET = "fake/secret/access/key"
BEDROCK_BEARER = "bedrock-api-key-fake"
PIXEL = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
PIXEL_B64 = base64.b64encode(PIXEL).decode()
TWO_CALLS = 'call get_weather {"city": "Paris"} call get_time {"tz": "CET"}'
CALLED = [("get_weather", {"city": "Paris"}), ("get_time", {"tz": "CET"})]


@pytest.fixture(scope="module")
def fake_openai() -> Iterator[tuple[FakeOpenAI, str]]:
    fake = FakeOpenAI(OPENAI_KEY)
    with BackgroundServer(fake.app()) as server:
        yield fake, server.url


@pytest.fixture(scope="module")
def fake_anthropic() -> Iterator[tuple[FakeAnthropic, str]]:
    fake = FakeAnthropic(ANTHROPIC_KEY)
    with BackgroundServer(fake.app()) as server:
        yield fake, server.url


@pytest.fixture(scope="module")
def fake_bedrock() -> Iterator[tuple[FakeBedrock, str]]:
    fake = FakeBedrock(AWS_KEY_ID, AWS_SECRET, BEDROCK_BEARER)
    with BackgroundServer(fake.app()) as server:
        yield fake, server.url


def _openai(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=OPENAI_KEY, max_retries=0)


def _anthropic(url: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=url, api_key=ANTHROPIC_KEY, max_retries=0)


def _bedrock(url: str, monkeypatch: pytest.MonkeyPatch, **keys: str) -> Any:
    monkeypatch.delenv("AWS_BEARER_TOKEN_BEDROCK", raising=False)  # it would win over SigV4 keys
    credentials = {"aws_access_key_id": AWS_KEY_ID, "aws_secret_access_key": AWS_SECRET, **keys}
    return boto3.client(
        "bedrock-runtime",
        endpoint_url=url,
        region_name="us-east-1",
        config=Config(retries={"total_max_attempts": 1}),
        **credentials,
    )


def _post_openai(url: str, body: Any, key: str = OPENAI_KEY) -> httpx.Response:
    return httpx.post(url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"})


def _post_anthropic(url: str, body: Any, **headers: str) -> httpx.Response:
    sent = {"x-api-key": ANTHROPIC_KEY, "anthropic-version": "2023-06-01", **headers}
    return httpx.post(url + "/v1/messages", json=body, headers={k.replace("_", "-"): v for k, v in sent.items()})


def _post_bedrock(url: str, body: Any, model: str = "m", bearer: str = BEDROCK_BEARER) -> httpx.Response:
    return httpx.post(f"{url}/model/{model}/converse", json=body, headers={"authorization": f"Bearer {bearer}"})


def _user(text: str) -> Any:
    return {"role": "user", "content": text}


# --- The shared scenario ----------------------------------------------------------------------


def test_stream_fragments_join_back_to_what_they_split() -> None:
    assert text_fragments("echo: one two") == ["echo:", " one", " two"]
    assert "".join(text_fragments("one two ")) == "one two "
    assert text_fragments("") == []
    for value in ({}, {"city": "Paris"}, {"nested": {"list": [1, 2, 3]}}):
        pieces = json_fragments(value)
        assert len(pieces) >= 3 and json.loads("".join(pieces)) == value


def test_the_answer_follows_the_model_name_and_the_last_user_turn() -> None:
    def answer(text: str, model: str = "m", **options: Any) -> Any:
        return decide(Conversation(model, [Turn("user", texts=[text])], **options))

    assert answer("hello").text == "echo: hello"
    calls = answer(TWO_CALLS)
    assert (calls.text, calls.stop_reason) == ("Let me check.", "tool_use")
    assert [(c.name, c.input) for c in calls.tool_calls] == CALLED
    stopped = answer("stop at halt", stop=["halt"])
    assert (stopped.text, stopped.stop_reason, stopped.stop_sequence) == ("one two ", "stop_sequence", "halt")
    assert answer("stop at halt").text == "one two halt three"
    cut = answer("a b c d", max_tokens=3)
    assert (cut.text, cut.stop_reason) == ("echo: a b", "max_tokens")
    assert (answer("hi", "x-fake-429").error_status, answer("hi", "x-fake-500").error_status) == (429, 500)
    assert answer("hi", "fake-stream-error").stream_fault == "error"
    results = Turn("user", tool_results=[{"id": "a", "content": "18C", "is_error": False}])
    assert decide(Conversation("m", [Turn("user", ["q"]), Turn("assistant", ["c"]), results])).text == "results: 18C"


# --- OpenAI -----------------------------------------------------------------------------------


def test_openai_answers_json_with_the_scenario_usage(fake_openai: tuple[FakeOpenAI, str]) -> None:
    fake, url = fake_openai
    completion = _openai(url).chat.completions.create(model="gpt-4o-mini", messages=[_user("hello")])
    assert completion.choices[0].message.content == "echo: hello"
    assert completion.choices[0].finish_reason == "stop"
    usage = completion.usage
    assert usage is not None and usage.prompt_tokens_details is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (42, 7, 49)
    assert usage.prompt_tokens_details.cached_tokens == 10
    sent = fake.requests[-1]
    assert set(sent) == {"path", "headers", "body", "observed"}
    assert sent["path"] == "/v1/chat/completions" and sent["headers"]["authorization"] == f"Bearer {OPENAI_KEY}"
    assert sent["observed"]["user_texts"] == ["hello"] and sent["observed"]["stream"] is False


def test_openai_streams_parallel_tool_calls_in_fragments(fake_openai: tuple[FakeOpenAI, str]) -> None:
    chunks = list(
        _openai(fake_openai[1]).chat.completions.create(
            model="gpt-4o-mini",
            messages=[_user(TWO_CALLS)],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    deltas = [d for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or []]
    calls: dict[int, dict[str, Any]] = {}
    for delta in deltas:
        call = calls.setdefault(delta.index, {"id": delta.id, "name": None, "arguments": "", "pieces": 0})
        assert delta.function is not None
        call["name"] = call["name"] or delta.function.name
        call["arguments"] += delta.function.arguments or ""
        call["pieces"] += 1
    assert text == "Let me check."
    assert [(c["id"], c["name"], json.loads(c["arguments"])) for c in calls.values()] == [
        ("call_0", "get_weather", {"city": "Paris"}),
        ("call_1", "get_time", {"tz": "CET"}),
    ]
    assert all(c["pieces"] >= 4 for c in calls.values())  # the opening delta, then >= 3 argument fragments
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["tool_calls"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 7


def test_openai_observes_the_whole_conversation(fake_openai: tuple[FakeOpenAI, str]) -> None:
    image = f"data:image/png;base64,{PIXEL_B64}"
    call: Any = {
        "id": "call_a",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
    }
    tool: Any = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    completion = _openai(fake_openai[1]).chat.completions.create(
        model="gpt-4o-mini",
        messages=[
            {"role": "system", "content": "Be terse."},
            {"role": "developer", "content": [{"type": "text", "text": "Use tools."}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "weather?"},
                    {"type": "image_url", "image_url": {"url": image}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                ],
            },
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_a", "content": "3C"},
            {"role": "user", "content": "describe"},
        ],
        tools=[tool],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_completion_tokens=500,
        temperature=0.25,
        top_p=0.5,
        stop="zzz",
    )
    assert json.loads(completion.choices[0].message.content or "") == {
        "system": "Be terse.\nUse tools.",
        "roles": ["user", "assistant", "tool", "user"],
        "user_texts": ["weather?", "describe"],
        "assistant_texts": [],
        "history_tool_calls": [{"id": "call_a", "name": "get_weather", "input": {"city": "Oslo"}}],
        "tool_results": [{"id": "call_a", "content": "3C", "is_error": False}],
        "images": [{"media_type": "image/png", "size": len(PIXEL)}, {"url": "https://example.com/a.png"}],
        "tools": ["get_weather"],
        "tool_choice": "tool:get_weather",
        "max_tokens": 500,
        "temperature": 0.25,
        "top_p": 0.5,
        "stop": ["zzz"],
        "stream": False,
    }


def test_openai_answers_tool_results_stop_sequences_and_max_tokens(fake_openai: tuple[FakeOpenAI, str]) -> None:
    client = _openai(fake_openai[1])
    calls: Any = [
        {"id": f"call_{i}", "type": "function", "function": {"name": n, "arguments": "{}"}}
        for i, n in enumerate(["a", "b"])
    ]
    results = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[
            _user("go"),
            {"role": "assistant", "content": "Let me check.", "tool_calls": calls},
            {"role": "tool", "tool_call_id": "call_0", "content": "18C"},
            {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "10:00"}]},
        ],
    )
    assert results.choices[0].message.content == "results: 18C | 10:00"
    stopped = client.chat.completions.create(model="m", messages=[_user("stop at halt")], stop=["halt"])
    assert (stopped.choices[0].message.content, stopped.choices[0].finish_reason) == ("one two ", "stop")
    cut = client.chat.completions.create(model="m", messages=[_user("a b c d e")], max_tokens=3)
    assert (cut.choices[0].message.content, cut.choices[0].finish_reason) == ("echo: a b", "length")


def _tool_call(id_: str) -> dict[str, Any]:
    return {"id": id_, "type": "function", "function": {"name": "f", "arguments": "{}"}}


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        ({"model": "m", "messages": [_user("x")], "aws_region_name": "eu"}, "aws_region_name"),
        ({"model": "m", "messages": [{"role": "user", "content": "x", "name_x": 1}]}, "name_x"),
        ({"model": "m", "messages": [{"role": "user", "content": 3}]}, "content"),
        ({"model": "m"}, "messages"),
        ({"model": "m", "messages": [_user("x")], "stream": "yes"}, "stream"),
        (
            {"model": "m", "messages": [_user("x"), {"role": "tool", "tool_call_id": "call_0", "content": "r"}]},
            "must be a response to a preceeding message with 'tool_calls'",
        ),
        (
            {
                "model": "m",
                "messages": [
                    _user("x"),
                    {"role": "assistant", "tool_calls": [_tool_call("call_0")]},
                    {"role": "tool", "tool_call_id": "call_9", "content": "r"},
                ],
            },
            "'call_9' not found",
        ),
        (
            {
                "model": "m",
                "messages": [
                    _user("x"),
                    {"role": "assistant", "tool_calls": [_tool_call("call_0"), _tool_call("call_1")]},
                    {"role": "tool", "tool_call_id": "call_0", "content": "r"},
                    _user("y"),
                ],
            },
            "did not have response messages: call_1",
        ),
        (
            {"model": "m", "messages": [_user("x"), {"role": "assistant", "tool_calls": [_tool_call("call_0")]}]},
            "did not have response messages: call_0",
        ),
    ],
)
def test_openai_refuses_what_openai_refuses(
    fake_openai: tuple[FakeOpenAI, str], body: dict[str, Any], complaint: str
) -> None:
    fake, url = fake_openai
    before = len(fake.requests)
    response = _post_openai(url, body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and complaint in error["message"]
    assert len(fake.requests) == before


def test_openai_wants_its_key_and_json(fake_openai: tuple[FakeOpenAI, str]) -> None:
    url = fake_openai[1]
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=url + "/v1", api_key="sk-wrong", max_retries=0).chat.completions.create(
            model="m", messages=[_user("x")]
        )
    plain = httpx.post(
        url + "/v1/chat/completions",
        content=b"{}",
        headers={"authorization": f"Bearer {OPENAI_KEY}", "content-type": "text/plain"},
    )
    assert plain.status_code == 415


def test_openai_errors_are_openais(fake_openai: tuple[FakeOpenAI, str]) -> None:
    client = _openai(fake_openai[1])
    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(model="gpt-fake-429", messages=[_user("x")])
    assert limited.value.response.headers["retry-after"] == "7"
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="fake-500", messages=[_user("x")])
    received: list[str] = []
    stream: Any = client.chat.completions.create(
        model="fake-stream-error", messages=[_user("one two three four")], stream=True
    )
    with pytest.raises(openai.APIError, match="server had an error"):
        for chunk in stream:
            received += [c.delta.content or "" for c in chunk.choices]
    assert "".join(received) == "echo: one"  # two text deltas, then the error


# --- Anthropic --------------------------------------------------------------------------------


def test_anthropic_answers_a_real_message(fake_anthropic: tuple[FakeAnthropic, str]) -> None:
    fake, url = fake_anthropic
    raw = _anthropic(url).messages.with_raw_response.create(
        model="claude-sonnet-4-6",
        max_tokens=50,
        messages=[{"role": "user", "content": "hello"}],
        extra_headers={"anthropic-beta": "prompt-caching-2024-07-31"},
    )
    message = raw.parse()
    assert [(b.type, getattr(b, "text", None)) for b in message.content] == [("text", "echo: hello")]
    assert (message.stop_reason, message.stop_sequence) == ("end_turn", None)
    usage = message.usage
    assert (usage.input_tokens, usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (32, 10, 0)
    assert usage.output_tokens == 7
    assert fake.requests[-1]["headers"]["anthropic-beta"] == "prompt-caching-2024-07-31"
    assert set(fake.requests[-1]) == {"path", "headers", "body", "observed"}


def test_anthropic_streams_the_real_event_sequence(fake_anthropic: tuple[FakeAnthropic, str]) -> None:
    events = list(
        _anthropic(fake_anthropic[1]).messages.create(
            model="claude-sonnet-4-6", max_tokens=100, messages=[{"role": "user", "content": TWO_CALLS}], stream=True
        )
    )
    kinds = [e.type for e in events]  # the SDK passes on every event but `ping`
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert kinds[-2:] == ["message_delta", "message_stop"]
    start = events[0]
    assert start.type == "message_start" and start.message.usage.input_tokens == 32
    assert start.message.usage.cache_read_input_tokens == 10
    blocks = [e.content_block for e in events if e.type == "content_block_start"]
    assert [b.type for b in blocks] == ["text", "tool_use", "tool_use"]
    assert [(b.id, b.name, b.input) for b in blocks if b.type == "tool_use"] == [
        ("toolu_0", "get_weather", {}),
        ("toolu_1", "get_time", {}),
    ]
    for index in (1, 2):
        pieces = [e.delta for e in events if e.type == "content_block_delta" and e.index == index]
        assert len(pieces) >= 3 and all(p.type == "input_json_delta" for p in pieces)
    assert kinds.count("content_block_stop") == 3
    final = events[-2]
    assert final.type == "message_delta" and final.delta.stop_reason == "tool_use"
    assert final.usage.output_tokens == 7


def test_anthropic_sends_a_ping_after_message_start(fake_anthropic: tuple[FakeAnthropic, str]) -> None:
    body = {**_anthropic_body(_user("hi")), "stream": True}
    headers = {"x-api-key": ANTHROPIC_KEY, "anthropic-version": "2023-06-01"}
    with httpx.stream("POST", fake_anthropic[1] + "/v1/messages", json=body, headers=headers) as response:
        names = [line.removeprefix("event: ") for line in response.iter_lines() if line.startswith("event: ")]
    assert names[:3] == ["message_start", "ping", "content_block_start"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]


def test_anthropic_stream_accumulates_into_the_scenarios_message(fake_anthropic: tuple[FakeAnthropic, str]) -> None:
    with _anthropic(fake_anthropic[1]).messages.stream(
        model="claude-sonnet-4-6",
        max_tokens=100,
        messages=[{"role": "user", "content": "stop at halt"}],
        stop_sequences=["halt"],
    ) as stream:
        message = stream.get_final_message()
    assert [getattr(b, "text", None) for b in message.content] == ["one two "]
    assert (message.stop_reason, message.stop_sequence, message.usage.output_tokens) == ("stop_sequence", "halt", 7)


def test_anthropic_observes_the_whole_conversation(fake_anthropic: tuple[FakeAnthropic, str]) -> None:
    fake, url = fake_anthropic
    body = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 300,
        "system": [{"type": "text", "text": "Be terse."}, {"type": "text", "text": "Use tools."}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "weather?", "cache_control": {"type": "ephemeral"}},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PIXEL_B64}},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {"city": "Oslo"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_a", "content": [{"type": "text", "text": "3C"}]},
                    {"type": "text", "text": "describe"},
                ],
            },
        ],
        "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "any"},
        "temperature": 0.25,  # the 2023-06-01 API version still takes sampling parameters
        "top_p": 0.5,
        "stop_sequences": ["zzz"],
    }
    response = _post_anthropic(url, body)
    assert response.status_code == 200, response.text
    assert json.loads(response.json()["content"][0]["text"]) == {
        "system": "Be terse.\nUse tools.",
        "roles": ["user", "assistant", "user"],
        "user_texts": ["weather?", "describe"],
        "assistant_texts": ["Checking."],
        "history_tool_calls": [{"id": "toolu_a", "name": "get_weather", "input": {"city": "Oslo"}}],
        "tool_results": [{"id": "toolu_a", "content": "3C", "is_error": False}],
        "images": [{"media_type": "image/png", "size": len(PIXEL)}, {"url": "https://example.com/a.png"}],
        "tools": ["get_weather"],
        "tool_choice": "required",
        "max_tokens": 300,
        "temperature": 0.25,
        "top_p": 0.5,
        "stop": ["zzz"],
        "stream": False,
    }
    assert fake.requests[-1]["observed"]["temperature"] == 0.25


def test_anthropic_answers_tool_results(fake_anthropic: tuple[FakeAnthropic, str]) -> None:
    message = _anthropic(fake_anthropic[1]).messages.create(
        model="claude-sonnet-4-6",
        max_tokens=100,
        messages=[
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_0", "name": "f", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_0", "content": "18C"}]},
        ],
    )
    assert [getattr(b, "text", None) for b in message.content] == ["results: 18C"]


def _tool_use(id_: str) -> dict[str, Any]:
    return {"type": "tool_use", "id": id_, "name": "f", "input": {}}


def _tool_result(id_: str) -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": id_, "content": "r"}


def _user_blocks(*blocks: dict[str, Any]) -> dict[str, Any]:
    return {"role": "user", "content": list(blocks)}


def _anthropic_body(*messages: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"model": "claude-sonnet-4-6", "max_tokens": 10, "messages": list(messages), **fields}


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        (_anthropic_body(_user("x"), top_k_x=1), "top_k_x"),
        (
            _anthropic_body({"role": "user", "content": [{"type": "text", "text": "x", "bold": True}]}),
            "bold",
        ),
        ({"model": "m", "messages": [_user("x")]}, "max_tokens"),
        (_anthropic_body({"role": "assistant", "content": "x"}), 'first message must use the "user" role'),
        (
            _anthropic_body(
                _user("x"), {"role": "assistant", "content": [_tool_use("toolu_0")]}, _user_blocks(_tool_result("t9"))
            ),
            "unexpected `tool_use_id` found in `tool_result` blocks: t9",
        ),
        (
            _anthropic_body(
                _user("x"),
                {"role": "assistant", "content": [_tool_use("toolu_0")]},
                _user_blocks({"type": "text", "text": "first"}, _tool_result("toolu_0")),
            ),
            "`tool_result` blocks must come first",
        ),
        (
            _anthropic_body(_user("x"), {"role": "assistant", "content": [_tool_use("toolu_0"), _tool_use("toolu_0")]}),
            "`tool_use` ids must be unique",
        ),
        (
            _anthropic_body(_user("x"), {"role": "assistant", "content": [_tool_use("toolu_0")]}, _user("y")),
            "without `tool_result` blocks immediately after: toolu_0",
        ),
    ],
)
def test_anthropic_refuses_what_anthropic_refuses(
    fake_anthropic: tuple[FakeAnthropic, str], body: dict[str, Any], complaint: str
) -> None:
    fake, url = fake_anthropic
    before = len(fake.requests)
    response = _post_anthropic(url, body)
    assert response.status_code == 400
    assert response.json()["type"] == "error"
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and complaint in error["message"]
    assert len(fake.requests) == before


def test_anthropic_wants_its_key_and_a_known_version(fake_anthropic: tuple[FakeAnthropic, str]) -> None:
    url = fake_anthropic[1]
    with pytest.raises(anthropic.AuthenticationError) as wrong:
        anthropic.Anthropic(base_url=url, api_key="sk-ant-wrong", max_retries=0).messages.create(
            model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    assert wrong.value.body == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "invalid x-api-key"},
        "request_id": "req_fake",
    }
    body = _anthropic_body(_user("x"))
    assert _post_anthropic(url, body, x_api_key="sk-ant-wrong").status_code == 401
    unversioned = httpx.post(url + "/v1/messages", json=body, headers={"x-api-key": ANTHROPIC_KEY})
    assert unversioned.status_code == 400 and "anthropic-version" in unversioned.json()["error"]["message"]
    assert _post_anthropic(url, body, anthropic_version="1999-01-01").status_code == 400
    # The current API version no longer takes sampling parameters.
    current = _post_anthropic(url, {**body, "temperature": 0.5}, anthropic_version="2026-10-21")
    assert current.status_code == 400 and "temperature" in current.json()["error"]["message"]
    assert _post_anthropic(url, {**body, "temperature": 3}).status_code == 400  # out of range


def test_anthropic_errors_are_anthropics(fake_anthropic: tuple[FakeAnthropic, str]) -> None:
    client = _anthropic(fake_anthropic[1])
    user: Any = [{"role": "user", "content": "one two three four"}]
    with pytest.raises(anthropic.RateLimitError) as limited:
        client.messages.create(model="claude-fake-429", max_tokens=5, messages=user)
    assert limited.value.response.headers["retry-after"] == "7"
    assert limited.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    with pytest.raises(anthropic.InternalServerError) as failed:
        client.messages.create(model="claude-fake-500", max_tokens=5, messages=user)
    assert failed.value.body["error"]["type"] == "api_error"  # type: ignore[index]
    deltas: list[str] = []
    events: Any = client.messages.create(model="claude-fake-stream-error", max_tokens=50, messages=user, stream=True)
    with pytest.raises(anthropic.APIStatusError, match="Overloaded"):
        for event in events:
            if event.type == "content_block_delta" and event.delta.type == "text_delta":
                deltas.append(event.delta.text)
    assert deltas == ["echo:", " one"]


# --- Bedrock ----------------------------------------------------------------------------------

ARN = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0"


def test_bedrock_answers_a_sigv4_signed_converse(
    fake_bedrock: tuple[FakeBedrock, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, url = fake_bedrock
    answer = _bedrock(url, monkeypatch).converse(modelId=ARN, messages=[{"role": "user", "content": [{"text": "hi"}]}])
    assert answer["output"]["message"] == {"role": "assistant", "content": [{"text": "echo: hi"}]}
    assert answer["stopReason"] == "end_turn"
    assert answer["usage"] == {
        "inputTokens": 32,
        "outputTokens": 7,
        "totalTokens": 49,
        "cacheReadInputTokens": 10,
        "cacheWriteInputTokens": 0,
    }
    assert answer["metrics"]["latencyMs"] > 0
    sent = fake.requests[-1]
    assert sent["model_id"] == ARN
    assert sent["path"].startswith("/model/arn%3Aaws%3Abedrock") and sent["path"].endswith("/converse")
    assert sent["headers"]["authorization"].startswith("AWS4-HMAC-SHA256 Credential=" + AWS_KEY_ID)


def test_bedrock_verifies_a_signature_with_a_session_token(
    fake_bedrock: tuple[FakeBedrock, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, url = fake_bedrock
    client = _bedrock(url, monkeypatch, aws_session_token="session-token")
    client.converse(modelId="m", messages=[{"role": "user", "content": [{"text": "hi"}]}])
    assert fake.requests[-1]["headers"]["x-amz-security-token"] == "session-token"


def test_bedrock_streams_text_then_tool_use_then_stop_and_metadata(
    fake_bedrock: tuple[FakeBedrock, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    tool_config = {"tools": [{"toolSpec": {"name": n, "inputSchema": {"json": {"type": "object"}}}} for n in "ab"]}
    response = _bedrock(fake_bedrock[1], monkeypatch).converse_stream(
        modelId="m", messages=[{"role": "user", "content": [{"text": TWO_CALLS}]}], toolConfig=tool_config
    )
    events = list(response["stream"])
    kinds = [next(iter(e)) for e in events]
    assert kinds[:2] == ["messageStart", "contentBlockDelta"]  # text needs no contentBlockStart
    assert kinds[-2:] == ["messageStop", "metadata"]
    text = "".join(e["contentBlockDelta"]["delta"].get("text", "") for e in events if "contentBlockDelta" in e)
    assert text == "Let me check."
    starts = [e["contentBlockStart"] for e in events if "contentBlockStart" in e]
    assert [(s["contentBlockIndex"], s["start"]["toolUse"]) for s in starts] == [
        (1, {"toolUseId": "tooluse_0", "name": "get_weather"}),
        (2, {"toolUseId": "tooluse_1", "name": "get_time"}),
    ]
    for index, (_, arguments) in zip((1, 2), CALLED, strict=True):
        pieces = [
            e["contentBlockDelta"]["delta"]["toolUse"]["input"]
            for e in events
            if "contentBlockDelta" in e and e["contentBlockDelta"]["contentBlockIndex"] == index
        ]
        assert len(pieces) >= 3 and json.loads("".join(pieces)) == arguments
    assert kinds.count("contentBlockStop") == 3
    assert events[-2]["messageStop"]["stopReason"] == "tool_use"
    assert events[-1]["metadata"]["usage"]["totalTokens"] == 49
    assert events[-1]["metadata"]["usage"]["cacheReadInputTokens"] == 10


def test_bedrock_observes_the_whole_conversation(
    fake_bedrock: tuple[FakeBedrock, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    answer = _bedrock(fake_bedrock[1], monkeypatch).converse(
        modelId="m",
        system=[{"text": "Be terse."}, {"text": "Use tools."}],
        messages=[
            {
                "role": "user",
                "content": [{"text": "weather?"}, {"image": {"format": "png", "source": {"bytes": PIXEL}}}],
            },
            {
                "role": "assistant",
                "content": [
                    {"text": "Checking."},
                    {"toolUse": {"toolUseId": "tooluse_a", "name": "get_weather", "input": {"city": "Oslo"}}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"toolResult": {"toolUseId": "tooluse_a", "content": [{"json": {"c": 3}}], "status": "error"}},
                    {"text": "describe"},
                ],
            },
        ],
        toolConfig={
            "tools": [{"toolSpec": {"name": "get_weather", "inputSchema": {"json": {"type": "object"}}}}],
            "toolChoice": {"any": {}},
        },
        inferenceConfig={"maxTokens": 300, "temperature": 0.25, "topP": 0.5, "stopSequences": ["zzz"]},
    )
    assert json.loads(answer["output"]["message"]["content"][0]["text"]) == {
        "system": "Be terse.\nUse tools.",
        "roles": ["user", "assistant", "user"],
        "user_texts": ["weather?", "describe"],
        "assistant_texts": ["Checking."],
        "history_tool_calls": [{"id": "tooluse_a", "name": "get_weather", "input": {"city": "Oslo"}}],
        "tool_results": [{"id": "tooluse_a", "content": '{"c":3}', "is_error": True}],
        "images": [{"media_type": "image/png", "size": len(PIXEL)}],
        "tools": ["get_weather"],
        "tool_choice": "required",
        "max_tokens": 300,
        "temperature": 0.25,
        "top_p": 0.5,
        "stop": ["zzz"],
        "stream": False,
    }


def test_bedrock_takes_its_api_key_as_a_bearer_token(fake_bedrock: tuple[FakeBedrock, str]) -> None:
    fake, url = fake_bedrock
    body = {"messages": [{"role": "user", "content": [{"text": "stop at halt"}]}]}
    stopped = _post_bedrock(url, {**body, "inferenceConfig": {"stopSequences": ["halt"]}})
    assert stopped.status_code == 200
    assert (stopped.json()["output"]["message"]["content"], stopped.json()["stopReason"]) == (
        [{"text": "one two "}],
        "stop_sequence",
    )
    assert fake.requests[-1]["headers"]["authorization"] == f"Bearer {BEDROCK_BEARER}"
    wrong = _post_bedrock(url, body, bearer="not-the-key")
    assert (wrong.status_code, wrong.headers["x-amzn-errortype"]) == (403, "AccessDeniedException")
    missing = httpx.post(f"{url}/model/m/converse", json=body)
    assert (missing.status_code, missing.headers["x-amzn-errortype"]) == (403, "MissingAuthenticationTokenException")


def test_bedrock_refuses_a_signature_that_does_not_verify(
    fake_bedrock: tuple[FakeBedrock, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, url = fake_bedrock
    before = len(fake.requests)
    messages = [{"role": "user", "content": [{"text": "hi"}]}]
    with pytest.raises(ClientError) as wrong_secret:
        _bedrock(url, monkeypatch, aws_secret_access_key="not-the-secret").converse(modelId="m", messages=messages)
    assert wrong_secret.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert wrong_secret.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert "signature we calculated does not match" in wrong_secret.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as unknown_key:
        _bedrock(url, monkeypatch, aws_access_key_id="AKIANOTKNOWN00000000").converse(modelId="m", messages=messages)
    assert unknown_key.value.response["Error"]["Code"] == "UnrecognizedClientException"
    # Signed correctly, then the body changed on the way.
    signed = AWSRequest(
        method="POST",
        url=f"{url}/model/m/converse",
        data=json.dumps({"messages": messages}).encode(),
        headers={"content-type": "application/json"},
    )
    SigV4Auth(Credentials(AWS_KEY_ID, AWS_SECRET), "bedrock", "us-east-1").add_auth(signed)
    tampered = json.dumps({"messages": [{"role": "user", "content": [{"text": "ho"}]}]}).encode()
    response = httpx.post(signed.url, content=tampered, headers=dict(signed.headers.items()))
    assert (response.status_code, response.headers["x-amzn-errortype"]) == (403, "InvalidSignatureException")
    untouched = httpx.post(signed.url, content=signed.body, headers=dict(signed.headers.items()))
    assert untouched.status_code == 200  # the same signature over the body it signed verifies
    assert len(fake.requests) == before + 1


def _text(role: str, text: str) -> dict[str, Any]:
    return {"role": role, "content": [{"text": text}]}


def _tool_use_block(id_: str) -> dict[str, Any]:
    return {"toolUse": {"toolUseId": id_, "name": "f", "input": {}}}


def _tool_result_block(id_: str) -> dict[str, Any]:
    return {"toolResult": {"toolUseId": id_, "content": [{"text": "r"}]}}


TOOL_CONFIG = {"tools": [{"toolSpec": {"name": "f", "inputSchema": {"json": {"type": "object"}}}}]}


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        ({"messages": [_text("user", "x")], "temperature": 1}, 'Unknown parameter in input: "temperature"'),
        ({"messages": [{"role": "user", "content": [{"text": "x", "bold": True}]}]}, '"bold"'),
        ({"messages": [_text("user", "x")], "modelId": "other"}, "Unknown parameter in input: modelId"),
        ({"messages": [{"role": "user", "content": "x"}]}, "Invalid type for parameter messages[0].content"),
        (
            {"messages": [{"role": "user", "content": [{"image": {"format": "png", "source": {"bytes": "**"}}}]}]},
            "invalid base64",
        ),
        ({"messages": [_text("user", "x"), _text("user", "y")]}, "must alternate between user and assistant roles"),
        ({"messages": [_text("assistant", "x")]}, "must start with a user message"),
        ({"messages": [_text("user", " ")]}, "is blank"),
        (
            {
                "messages": [
                    _text("user", "x"),
                    {"role": "assistant", "content": [_tool_use_block("t0")]},
                    _text("user", "y"),
                ]
            },
            "The toolConfig field must be defined",
        ),
        (
            {
                "messages": [
                    _text("user", "x"),
                    _text("assistant", "y"),
                    {"role": "user", "content": [_tool_result_block("t0")]},
                ],
                "toolConfig": TOOL_CONFIG,
            },
            "exceeds the number of toolUse blocks of previous turn",
        ),
        (
            {
                "messages": [
                    _text("user", "x"),
                    {"role": "assistant", "content": [_tool_use_block("t0")]},
                    {"role": "user", "content": [_tool_result_block("t9")]},
                ],
                "toolConfig": TOOL_CONFIG,
            },
            "Expected toolResult blocks at messages.2.content for the following Ids: t0",
        ),
    ],
)
def test_bedrock_refuses_what_bedrock_refuses(
    fake_bedrock: tuple[FakeBedrock, str], body: dict[str, Any], complaint: str
) -> None:
    fake, url = fake_bedrock
    before = len(fake.requests)
    response = _post_bedrock(url, body)
    assert response.status_code == 400
    assert response.headers["x-amzn-errortype"] in {"ValidationException", "SerializationException"}
    assert complaint in response.json()["message"]
    assert len(fake.requests) == before


def test_bedrock_errors_are_bedrocks(fake_bedrock: tuple[FakeBedrock, str], monkeypatch: pytest.MonkeyPatch) -> None:
    client = _bedrock(fake_bedrock[1], monkeypatch)
    messages = [{"role": "user", "content": [{"text": "one two three four"}]}]
    with pytest.raises(ClientError) as limited:
        client.converse(modelId="anthropic.fake-429", messages=messages)
    assert limited.value.response["Error"]["Code"] == "ThrottlingException"
    assert limited.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert limited.value.response["ResponseMetadata"]["HTTPHeaders"]["retry-after"] == "7"
    with pytest.raises(ClientError) as failed:
        client.converse(modelId="anthropic.fake-500", messages=messages)
    assert failed.value.response["Error"]["Code"] == "InternalServerException"
    texts: list[str] = []
    with pytest.raises(EventStreamError) as mid_stream:
        for event in client.converse_stream(modelId="anthropic.fake-stream-error", messages=messages)["stream"]:
            texts.append(event.get("contentBlockDelta", {}).get("delta", {}).get("text", ""))
    assert mid_stream.value.response["Error"]["Code"] == "throttlingException"
    assert "".join(texts) == "echo: one"


# --- Broken streams (every provider) ----------------------------------------------------------


def _broken_stream_request(provider: str, url: str) -> tuple[str, dict[str, Any], dict[str, str]]:
    text = "one two three four five six"
    if provider == "openai":
        body = {"model": "fake-broken-stream", "messages": [_user(text)], "stream": True}
        return url + "/v1/chat/completions", body, {"authorization": f"Bearer {OPENAI_KEY}"}
    if provider == "anthropic":
        body = {**_anthropic_body(_user(text)), "model": "fake-broken-stream", "stream": True}
        return url + "/v1/messages", body, {"x-api-key": ANTHROPIC_KEY, "anthropic-version": "2023-06-01"}
    body = {"messages": [_text("user", text)]}
    return f"{url}/model/fake-broken-stream/converse-stream", body, {"authorization": f"Bearer {BEDROCK_BEARER}"}


@pytest.mark.parametrize("provider", ["openai", "anthropic", "bedrock"])
def test_a_broken_stream_drops_the_connection_after_some_text(
    provider: str,
    fake_openai: tuple[FakeOpenAI, str],
    fake_anthropic: tuple[FakeAnthropic, str],
    fake_bedrock: tuple[FakeBedrock, str],
) -> None:
    url = {"openai": fake_openai, "anthropic": fake_anthropic, "bedrock": fake_bedrock}[provider][1]
    endpoint, body, headers = _broken_stream_request(provider, url)
    received = b""
    with pytest.raises(httpx.RemoteProtocolError), httpx.stream("POST", endpoint, json=body, headers=headers) as r:
        assert r.status_code == 200
        for piece in r.iter_bytes():
            received += piece
    assert b"echo:" in received and b"three" not in received


# --- Storms ------------------------------------------------------------------------------------


def _post_any(provider: str, url: str, model: str, stream: bool = False) -> httpx.Response:
    """One request in the provider's wire format, with the model in the body or (Bedrock) the path."""
    if provider == "openai":
        return _post_openai(url, {"model": model, "messages": [_user("a b c d e f")], "stream": stream})
    if provider == "anthropic":
        body = {"model": model, "max_tokens": 50, "messages": [_user("a b c d e f")], "stream": stream}
        return _post_anthropic(url, body)
    operation = "converse-stream" if stream else "converse"
    body = {"messages": [{"role": "user", "content": [{"text": "a b c d e f"}]}]}
    return httpx.post(
        f"{url}/model/{model}/{operation}", json=body, headers={"authorization": f"Bearer {BEDROCK_BEARER}"}
    )


@pytest.mark.parametrize("provider", ["openai", "anthropic", "bedrock"])
def test_a_storm_answers_its_faults_in_turn_in_the_providers_shape_until_calmed(
    provider: str, request: pytest.FixtureRequest
) -> None:
    fake, url = request.getfixturevalue(f"fake_{provider}")
    fake.faults.storm([Fault(error_status=429, retry_after=None), Fault(error_status=429, retry_after=3)])
    try:
        without, with_retry_after = _post_any(provider, url, "m"), _post_any(provider, url, "other")
        fake.faults.storm([Fault(error_status=529), Fault(error_status=502)])
        overloaded, bad_gateway = _post_any(provider, url, "m"), _post_any(provider, url, "m")
        fake.faults.storm([Fault(stream_fault="error")], "only-this-one")
        again = _post_any(provider, url, "m")  # round and round; a storm on one model spares the others
    finally:
        fake.faults.calm()
    assert (without.status_code, with_retry_after.status_code) == (429, 429)
    assert "retry-after" not in without.headers and with_retry_after.headers["retry-after"] == "3"
    assert (overloaded.status_code, bad_gateway.status_code, again.status_code) == (529, 502, 529)
    # Each in its provider's error shape.
    error_key = {"openai": "error", "anthropic": "error", "bedrock": "message"}[provider]
    assert all(error_key in r.json() for r in (without, overloaded, bad_gateway))
    assert _post_any(provider, url, "m").status_code == 200


@pytest.mark.parametrize("provider", ["openai", "anthropic", "bedrock"])
def test_a_storm_of_resets_mid_stream_cuts_the_stream_after_its_first_bytes(
    provider: str, request: pytest.FixtureRequest
) -> None:
    fake, url = request.getfixturevalue(f"fake_{provider}")
    fake.faults.storm([Fault(stream_fault="broken")], "m")
    try:
        with pytest.raises(httpx.RemoteProtocolError):
            _post_any(provider, url, "m", stream=True)
        whole = _post_any(provider, url, "m")  # an answer that is not a stream has nothing to break
    finally:
        fake.faults.calm()
    assert whole.status_code == 200


# --- Model lists -------------------------------------------------------------------------------


def test_openai_lists_its_models_as_the_sdk_reads_them(fake_openai: tuple[FakeOpenAI, str]) -> None:
    _, url = fake_openai
    models = _openai(url).models.list()
    assert [m.id for m in models] == list(OPENAI_MODELS)
    assert all(m.object == "model" and m.created > 0 and m.owned_by for m in models)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=url + "/v1", api_key="wrong", max_retries=0).models.list()


def test_anthropic_lists_its_models_in_pages(fake_anthropic: tuple[FakeAnthropic, str]) -> None:
    fake, url = fake_anthropic
    client = _anthropic(url)
    first = client.models.list(limit=2)
    assert [m.id for m in first.data] == ["claude-opus-4-5", "claude-sonnet-4-6"]
    assert first.has_more and first.first_id == "claude-opus-4-5" and first.last_id == "claude-sonnet-4-6"
    assert [m.id for m in client.models.list(limit=2)] == [m[0] for m in ANTHROPIC_MODELS]  # the SDK pages on
    assert fake.requests[-1]["query"] == {"limit": "2", "after_id": "claude-sonnet-4-5"}
    before = client.models.list(limit=1, before_id="claude-haiku-4-5")
    assert [m.id for m in before.data] == ["claude-sonnet-4-6"] and before.has_more
    assert all(m.type == "model" and m.display_name and m.created_at for m in first.data)
    with pytest.raises(anthropic.BadRequestError):
        client.models.list(limit=1001)


def test_bedrock_lists_foundation_models_and_inference_profiles_signed_or_with_a_key(
    fake_bedrock: tuple[FakeBedrock, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, url = fake_bedrock
    monkeypatch.delenv("AWS_BEARER_TOKEN_BEDROCK", raising=False)
    control = boto3.client(
        "bedrock",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=AWS_KEY_ID,
        aws_secret_access_key=AWS_SECRET,
        config=Config(retries={"total_max_attempts": 1}),
    )
    listed = control.list_foundation_models()["modelSummaries"]
    assert [m["modelId"] for m in listed] == [m[0] for m in BEDROCK_MODELS]
    embedding = control.list_foundation_models(byOutputModality="EMBEDDING")["modelSummaries"]
    assert [m["modelId"] for m in embedding] == ["amazon.titan-embed-text-v2:0"]
    pages = control.get_paginator("list_inference_profiles").paginate(PaginationConfig={"PageSize": 1})
    profiles = [p for page in pages for p in page["inferenceProfileSummaries"]]
    assert [p["inferenceProfileId"] for p in profiles] == [p[0] for p in BEDROCK_PROFILES]
    keyed = httpx.get(url + "/foundation-models", headers={"authorization": f"Bearer {BEDROCK_BEARER}"})
    assert keyed.status_code == 200 and keyed.json()["modelSummaries"] == listed
    refused = httpx.get(url + "/foundation-models", headers={"authorization": "Bearer wrong"})
    assert refused.status_code == 403 and refused.headers["x-amzn-errortype"] == "AccessDeniedException"
