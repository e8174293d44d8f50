"""The Dispatcher with the real provider adapters against fake upstreams that fail on purpose.

The fakes' failure injection is keyed by the model name (fakes/scenario.py): each test
uses its own model names, since the fakes count flaky requests for their whole module.
Waits between retries go to a recording sleep; only the per-attempt timeout runs on the
real clock, and no test asserts how long anything took.
"""

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from msgspec.structs import replace

from fakes.anthropic_upstream import FakeAnthropic
from fakes.bedrock_upstream import FakeBedrock
from fakes.openai_upstream import FakeOpenAI
from fakes.serve import BackgroundServer, free_port
from orqen_common.formats.openai import ChatCompletionChunk, ChatRequest, CompletionUsage, UserMessage
from orqen_dispatch.providers.anthropic import AnthropicMessages
from orqen_dispatch.providers.base import Provider, StreamState, UpstreamError
from orqen_dispatch.providers.bedrock import BedrockConverse
from orqen_dispatch.providers.openai import OpenAICompatible
from orqen_dispatch.resilience import (
    AttemptRecord,
    CircuitBreakers,
    Dispatcher,
    DispatchFailedError,
    RetryPolicy,
    Target,
)
from orqen_dispatch.upstream_http import AiohttpClient, open_client

OPENAI_KEY = "sk-upstream"
ANTHROPIC_KEY = "sk-ant-upstream"
AWS_KEY_ID, AWS_SECRET, BEDROCK_BEARER = "AKIDFAKE", "fake-secret", "bedrock-api-key"
CHAT = ChatRequest(model="ignored", messages=[UserMessage(content="hello world")])


@dataclass
class Sleeps:
    waits: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture(scope="module")
def openai_fake() -> Iterator[tuple[FakeOpenAI, str]]:
    upstream = FakeOpenAI(OPENAI_KEY)
    with BackgroundServer(upstream.app()) as server:
        yield upstream, server.url + "/v1"


@pytest.fixture(scope="module")
def anthropic_fake() -> Iterator[tuple[FakeAnthropic, str]]:
    upstream = FakeAnthropic(ANTHROPIC_KEY)
    with BackgroundServer(upstream.app()) as server:
        yield upstream, server.url


@pytest.fixture(scope="module")
def bedrock_fake() -> Iterator[tuple[FakeBedrock, str]]:
    upstream = FakeBedrock(AWS_KEY_ID, AWS_SECRET, BEDROCK_BEARER)
    with BackgroundServer(upstream.app()) as server:
        yield upstream, server.url


@pytest.fixture
async def client() -> AsyncIterator[AiohttpClient]:
    async with open_client(10, 10) as http:
        yield http


@pytest.fixture
def openai(openai_fake: tuple[FakeOpenAI, str], client: AiohttpClient) -> OpenAICompatible:
    return OpenAICompatible("openai", client, openai_fake[1], OPENAI_KEY)


def dispatcher(sleeps: Sleeps, **policy: Any) -> Dispatcher:
    return Dispatcher(RetryPolicy(**policy), CircuitBreakers(threshold=100), sleep=sleeps)


def summary(attempts: list[AttemptRecord]) -> list[tuple[str, int, str]]:
    return [(a.model, a.status, a.reason) for a in attempts]


def requests_for(upstream: FakeOpenAI | FakeAnthropic | FakeBedrock, model: str) -> int:
    return sum(1 for r in upstream.requests if _model(r) == model)


def _model(request: dict[str, Any]) -> str:
    return str(request.get("model_id") or request["body"]["model"])


def text_of(chunks: list[ChatCompletionChunk]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


# --- Completions ---------------------------------------------------------------------------------


async def test_a_flaky_429_is_retried_until_the_answer(
    openai_fake: tuple[FakeOpenAI, str], openai: OpenAICompatible
) -> None:
    sleeps = Sleeps()
    completion, answered, attempts = await dispatcher(sleeps).complete(
        [Target(openai, "fake-flaky-429-2", {}, "requested")], CHAT
    )
    assert completion.body.choices[0].message.content == "echo: hello world"
    assert answered.model == "fake-flaky-429-2"
    assert summary(attempts) == [
        ("fake-flaky-429-2", 429, "requested"),
        ("fake-flaky-429-2", 429, "retry"),
        ("fake-flaky-429-2", 200, "retry"),
    ]
    assert "Rate limit" in attempts[0].error
    assert sleeps.waits == [0, 0]  # the fake's retry-after: 0, not a backoff
    assert requests_for(openai_fake[0], "fake-flaky-429-2") == 3


async def test_server_errors_exhaust_the_target_then_the_fallback_answers(
    openai_fake: tuple[FakeOpenAI, str], openai: OpenAICompatible
) -> None:
    sleeps = Sleeps()
    targets = [Target(openai, "fake-500", {}, "requested"), Target(openai, "gpt-4o-mini", {}, "fallback")]
    completion, answered, attempts = await dispatcher(sleeps).complete(targets, CHAT)
    assert completion.body.model == "gpt-4o-mini" and answered is targets[1]
    assert summary(attempts) == [
        ("fake-500", 500, "requested"),
        ("fake-500", 500, "retry"),
        ("fake-500", 500, "retry"),
        ("gpt-4o-mini", 200, "fallback"),
    ]
    assert len(sleeps.waits) == 2 and all(0 <= w <= 0.5 for w in sleeps.waits)  # jittered backoff


async def test_a_slow_upstream_hits_the_attempt_timeout_and_the_retry_and_fallback_follow(
    openai: OpenAICompatible,
) -> None:
    targets = [Target(openai, "fake-slow-30000", {}, "requested"), Target(openai, "gpt-4o-mini", {}, "fallback")]
    completion, _, attempts = await dispatcher(Sleeps(), max_attempts=2, attempt_timeout_s=0.5).complete(targets, CHAT)
    assert completion.body.choices[0].message.content == "echo: hello world"
    assert summary(attempts) == [
        ("fake-slow-30000", 504, "requested"),
        ("fake-slow-30000", 504, "retry"),
        ("gpt-4o-mini", 200, "fallback"),
    ]
    assert "did not answer within 0.5s" in attempts[0].error


async def test_a_slow_upstream_within_the_attempt_timeout_is_just_slow(openai: OpenAICompatible) -> None:
    _, _, attempts = await dispatcher(Sleeps(), attempt_timeout_s=30).complete(
        [Target(openai, "fake-slow-50", {}, "requested")], CHAT
    )
    assert summary(attempts) == [("fake-slow-50", 200, "requested")]


async def test_a_dropped_connection_is_retried_then_the_fallback_answers(
    openai_fake: tuple[FakeOpenAI, str], openai: OpenAICompatible
) -> None:
    targets = [Target(openai, "fake-drop", {}, "requested"), Target(openai, "gpt-4o-mini", {}, "fallback")]
    _, answered, attempts = await dispatcher(Sleeps()).complete(targets, CHAT)
    assert answered is targets[1]
    assert [(a.status, a.reason) for a in attempts] == [
        (502, "requested"),
        (502, "retry"),
        (502, "retry"),
        (200, "fallback"),
    ]
    assert "broke the connection" in attempts[0].error
    assert requests_for(openai_fake[0], "fake-drop") == 3


async def test_a_bad_request_is_not_retried_nor_sent_to_the_fallback(
    openai_fake: tuple[FakeOpenAI, str], openai: OpenAICompatible
) -> None:
    targets = [Target(openai, "fake-flaky-422-9", {}, "requested"), Target(openai, "gpt-4o-mini", {}, "fallback")]
    with pytest.raises(DispatchFailedError) as failed:
        await dispatcher(Sleeps()).complete(targets, CHAT)
    assert failed.value.status == 422 and failed.value.target is targets[0]
    assert summary(failed.value.attempts) == [("fake-flaky-422-9", 422, "requested")]


async def test_a_wrong_key_moves_on_to_a_fallback_with_its_own(
    openai_fake: tuple[FakeOpenAI, str], client: AiohttpClient
) -> None:
    wrong = OpenAICompatible("groq", client, openai_fake[1], "sk-wrong")
    right = OpenAICompatible("openai", client, openai_fake[1], OPENAI_KEY)
    targets = [Target(wrong, "gpt-4o-mini", {}, "requested"), Target(right, "gpt-4o-mini", {}, "fallback")]
    _, answered, attempts = await dispatcher(Sleeps()).complete(targets, CHAT)
    assert answered is targets[1]
    assert [(a.provider, a.status) for a in attempts] == [("groq", 401), ("openai", 200)]


async def test_an_unreachable_provider_opens_its_circuit_and_is_then_skipped(
    client: AiohttpClient, openai: OpenAICompatible
) -> None:
    down = OpenAICompatible("down", client, f"http://127.0.0.1:{free_port()}/v1", OPENAI_KEY)
    breakers = CircuitBreakers(threshold=2, cooldown_s=3600)
    dispatch = Dispatcher(RetryPolicy(max_attempts=2), breakers, sleep=Sleeps())
    targets = [Target(down, "gpt-4o-mini", {}, "requested"), Target(openai, "gpt-4o-mini", {}, "fallback")]
    _, _, first = await dispatch.complete(targets, CHAT)
    assert [(a.provider, a.status) for a in first] == [("down", 502), ("down", 502), ("openai", 200)]
    _, _, second = await dispatch.complete(targets, CHAT)
    assert [(a.provider, a.status, a.error) for a in second] == [("down", 503, "circuit open"), ("openai", 200, "")]


# --- Streams -------------------------------------------------------------------------------------


async def test_a_stream_with_errors_before_its_first_chunk_is_retried(
    openai_fake: tuple[FakeOpenAI, str], openai: OpenAICompatible
) -> None:
    state, attempts = StreamState(), list[AttemptRecord]()
    stream = dispatcher(Sleeps()).stream([Target(openai, "fake-flaky-503-2", {}, "requested")], CHAT, state, attempts)
    chunks = [chunk async for chunk in stream]
    assert text_of(chunks) == "echo: hello world"
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and isinstance(usage, CompletionUsage) and usage.completion_tokens == 7
    assert [(a.status, a.reason) for a in attempts] == [(503, "requested"), (503, "retry"), (200, "retry")]
    assert stream.target is not None and stream.target.model == "fake-flaky-503-2"
    assert (state.status, state.usage.output) == (200, 7)


async def test_a_stream_whose_connection_drops_before_any_chunk_falls_back(
    openai_fake: tuple[FakeOpenAI, str], openai: OpenAICompatible
) -> None:
    targets = [Target(openai, "fake-drop-stream", {}, "requested"), Target(openai, "gpt-4o-mini", {}, "fallback")]
    attempts: list[AttemptRecord] = []
    stream = dispatcher(Sleeps(), max_attempts=2).stream(targets, CHAT, StreamState(), attempts)
    assert text_of([chunk async for chunk in stream]) == "echo: hello world"
    assert [(a.status, a.reason) for a in attempts] == [(502, "requested"), (502, "retry"), (200, "fallback")]
    assert stream.target is targets[1]


async def test_a_stream_that_breaks_after_its_first_chunk_is_not_retried(
    openai_fake: tuple[FakeOpenAI, str], openai: OpenAICompatible
) -> None:
    targets = [Target(openai, "fake-broken-stream", {}, "requested"), Target(openai, "gpt-4o-spare", {}, "fallback")]
    chat = replace(CHAT, messages=[UserMessage(content="one two three four five six")])
    attempts: list[AttemptRecord] = []
    received: list[ChatCompletionChunk] = []
    with pytest.raises(UpstreamError) as broken:
        async for chunk in dispatcher(Sleeps()).stream(targets, chat, StreamState(), attempts):
            received.append(chunk)
    assert not isinstance(broken.value, DispatchFailedError)  # raised as the provider raised it
    assert broken.value.status == 502
    assert "echo:" in text_of(received) and "six" not in text_of(received)
    assert requests_for(openai_fake[0], "fake-broken-stream") == 1
    assert requests_for(openai_fake[0], "gpt-4o-spare") == 0
    assert [(a.model, a.status) for a in attempts] == [("fake-broken-stream", 502)]


# --- The same failure injection in the Anthropic and Bedrock fakes ---------------------------------


@pytest.fixture
def providers(
    anthropic_fake: tuple[FakeAnthropic, str], bedrock_fake: tuple[FakeBedrock, str], client: AiohttpClient
) -> dict[str, Provider]:
    return {
        "anthropic": AnthropicMessages("anthropic", client, anthropic_fake[1], ANTHROPIC_KEY, 256),
        "bedrock": BedrockConverse("bedrock", client, bedrock_fake[1], "us-east-1", None, None, None, BEDROCK_BEARER),
    }


@pytest.mark.parametrize(
    ("model", "statuses"),
    [("fake-flaky-529-2", [529, 529, 200]), ("fake-flaky-429-1", [429, 200]), ("fake-slow-20", [200])],
)
@pytest.mark.parametrize("provider_name", ["anthropic", "bedrock"])
async def test_anthropic_and_bedrock_fakes_inject_the_same_failures(
    providers: dict[str, Provider], provider_name: str, model: str, statuses: list[int]
) -> None:
    provider = providers[provider_name]
    sleeps = Sleeps()
    wire_model = f"{provider_name}-{model}"
    completion, _, attempts = await dispatcher(sleeps).complete([Target(provider, wire_model, {}, "requested")], CHAT)
    assert completion.body.choices[0].message.content == "echo: hello world"
    assert [a.status for a in attempts] == statuses
    if statuses[0] == 429:
        assert sleeps.waits == [0]  # both send a retry-after of 0 for a flaky 429


@pytest.mark.parametrize("provider_name", ["anthropic", "bedrock"])
async def test_anthropic_and_bedrock_fakes_drop_the_connection(
    providers: dict[str, Provider], provider_name: str
) -> None:
    provider = providers[provider_name]
    attempts: list[AttemptRecord] = []
    with pytest.raises(DispatchFailedError) as failed:
        await dispatcher(Sleeps(), max_attempts=1).complete([Target(provider, "fake-drop", {}, "requested")], CHAT)
    assert failed.value.status == 502
    stream = dispatcher(Sleeps(), max_attempts=1).stream(
        [Target(provider, "fake-drop", {}, "requested")], CHAT, StreamState(), attempts
    )
    with pytest.raises(DispatchFailedError) as failed_stream:
        [chunk async for chunk in stream]
    assert failed_stream.value.status == 502 and [a.status for a in attempts] == [502]
