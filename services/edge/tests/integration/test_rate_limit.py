"""Rate limits on a real Redis: per key and per account, tokens charged after the call, atomic across replicas.

Time is an injected clock, so the sliding window is shown without sleeping. The last
tests run the real edge app (with dispatch replaced in-process) and the official SDKs.
"""

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anthropic
import httpx2
import openai
import orjson
import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from fakes.serve import free_port
from orqen.v1 import common_pb2, dispatch_pb2, events_pb2
from orqen_edge.app import create_app
from orqen_edge.middleware import RequestContextMiddleware
from orqen_edge.rate_limit import Admission, RateLimiter, RateLimitError, RateLimits
from orqen_edge.runtime import Runtime

from .conftest import OpenRuntime


class Clock:
    """Wall-clock seconds that only move when a test says so."""

    def __init__(self) -> None:
        self.now = 1_750_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def redis(orqen_redis_db_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(orqen_redis_db_url)
    yield client
    await client.aclose()


async def _refused(limiter: RateLimiter, account: str, key: str) -> RateLimitError:
    with pytest.raises(RateLimitError) as err:
        await limiter.admit(account, key)
    return err.value


# ---- the limiter on its own --------------------------------------------------------------------------------------


async def test_a_key_is_refused_past_its_requests_per_minute_until_the_window_slides(
    redis: Redis, clock: Clock
) -> None:
    limiter = RateLimiter(redis, RateLimits(key_rpm=3), clock=clock)
    remaining = [(await limiter.admit("acct", "key")).headers["x-ratelimit-remaining-requests"] for _ in range(3)]
    assert remaining == ["2", "1", "0"]

    err = await _refused(limiter, "acct", "key")
    assert err.http_status == 429 and err.kind.openai_type == "rate_limit_error"
    assert err.message == "Rate limit reached for API key: 3 requests per minute."
    assert err.retry_after == 20  # one request frees up every 60/3 seconds
    assert err.headers == {
        "x-ratelimit-limit-requests": "3",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "1m0s",
        "retry-after-ms": "20000",
    }

    clock.advance(19.9)
    await _refused(limiter, "acct", "key")
    clock.advance(0.1)
    assert (await limiter.admit("acct", "key")).headers["x-ratelimit-remaining-requests"] == "0"
    await _refused(limiter, "acct", "key")

    clock.advance(60)  # a whole window later the whole budget is back
    assert (await limiter.admit("acct", "key")).headers["x-ratelimit-remaining-requests"] == "2"


async def test_two_keys_of_one_account_share_the_account_budget(redis: Redis, clock: Clock) -> None:
    limiter = RateLimiter(redis, RateLimits(key_rpm=2, account_rpm=3), clock=clock)
    await limiter.admit("acct", "key-a")
    headers = (await limiter.admit("acct", "key-a")).headers
    assert headers["x-ratelimit-remaining-requests"] == "0"  # the key's budget is the tighter one
    assert (await _refused(limiter, "acct", "key-a")).message.startswith("Rate limit reached for API key:")

    headers = (await limiter.admit("acct", "key-b")).headers
    assert (headers["x-ratelimit-limit-requests"], headers["x-ratelimit-remaining-requests"]) == ("3", "0")
    err = await _refused(limiter, "acct", "key-b")
    assert err.message == "Rate limit reached for account: 3 requests per minute."

    # Another account, and its key, start with full budgets.
    headers = (await limiter.admit("other", "key-c")).headers
    assert (headers["x-ratelimit-limit-requests"], headers["x-ratelimit-remaining-requests"]) == ("2", "1")


async def test_tokens_are_charged_after_the_call_and_refuse_the_next_request(redis: Redis, clock: Clock) -> None:
    limiter = RateLimiter(redis, RateLimits(key_rpm=100, key_tpm=1_000, account_tpm=2_000), clock=clock)
    admitted = await limiter.admit("acct", "key-a")
    headers = admitted.headers
    # Admission needs a token left but spends none: the request's size is not known yet.
    assert (headers["x-ratelimit-remaining-tokens"], headers["x-ratelimit-reset-tokens"]) == ("1000", "0s")

    await limiter.charge(admitted, 1_100)  # more than the budget: the call already happened
    err = await _refused(limiter, "acct", "key-a")
    assert err.message == "Rate limit reached for API key: 1000 tokens per minute."
    # 101 tokens must drain at 1000 a minute before a token is free again: 6.06 s.
    assert (err.retry_after, err.headers["retry-after-ms"]) == (7, "6060")
    assert err.headers["x-ratelimit-remaining-tokens"] == "0"
    assert err.headers["x-ratelimit-remaining-requests"] == "99"  # the refused request was not counted

    # The account budget was charged too: another key of the account has only its remainder.
    admitted = await limiter.admit("acct", "key-b")
    headers = admitted.headers
    assert (headers["x-ratelimit-limit-tokens"], headers["x-ratelimit-remaining-tokens"]) == ("2000", "900")
    await limiter.charge(admitted, 950)  # within key-b's own budget, past the account's
    err = await _refused(limiter, "acct", "key-b")
    assert err.message == "Rate limit reached for account: 2000 tokens per minute."
    assert err.headers["retry-after-ms"] == "1530"  # 51 tokens at 2000 a minute

    clock.advance(6.06)
    headers = (await limiter.admit("acct", "key-a")).headers
    assert (headers["x-ratelimit-limit-tokens"], headers["x-ratelimit-remaining-tokens"]) == ("1000", "1")


@pytest.mark.parametrize("limit", [10, 7])
async def test_admission_is_atomic_across_replicas(orqen_redis_db_url: str, clock: Clock, limit: int) -> None:
    # Five replicas, each with its own connections, admit 50 requests at the same instant.
    # Each call opens a connection and may load the script first: on a loaded machine that can
    # outlast the production deadline, and a check past it fails open (admitted unlimited) —
    # which is not what this test is about, so the deadline here is one nothing reaches.
    replicas = [Redis.from_url(orqen_redis_db_url) for _ in range(5)]
    failed_open = _fail_open_count("admit")
    try:
        limiters = [RateLimiter(r, RateLimits(account_rpm=limit), clock=clock, redis_deadline=300) for r in replicas]
        results = await asyncio.gather(
            *(limiters[i % 5].admit("acct", f"key-{i % 3}") for i in range(50)), return_exceptions=True
        )
    finally:
        for replica in replicas:
            await replica.aclose()
    assert _fail_open_count("admit") == failed_open
    # Admitted means counted: an admission carries the budget's headers (a fail-open answers none).
    admitted = [r for r in results if isinstance(r, Admission) and "x-ratelimit-limit-requests" in r.headers]
    refused = [r for r in results if isinstance(r, RateLimitError)]
    assert (len(admitted), len(refused)) == (limit, 50 - limit)
    # Each admission saw the budget as the previous one left it.
    remaining = sorted(int(a.headers["x-ratelimit-remaining-requests"]) for a in admitted)
    assert remaining == list(range(limit))


def _fail_open_count(operation: str) -> float:
    return REGISTRY.get_sample_value("orqen_rate_limit_fail_open_total", {"operation": operation}) or 0.0


async def test_redis_down_fails_open(clock: Clock) -> None:
    dead = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0")
    limiter = RateLimiter(dead, RateLimits(key_rpm=1, account_tpm=10), clock=clock)
    admits, charges = _fail_open_count("admit"), _fail_open_count("charge")
    try:
        for _ in range(3):
            admitted = await limiter.admit("acct", "key")
            assert admitted.headers == {}  # admitted, and no limit to report
        await limiter.charge(admitted, 500)
    finally:
        await dead.aclose()
    assert (_fail_open_count("admit") - admits, _fail_open_count("charge") - charges) == (3, 1)


async def test_without_limits_redis_is_never_touched(redis: Redis, clock: Clock) -> None:
    limiter = RateLimiter(redis, RateLimits(), clock=clock)
    admitted = await limiter.admit("acct", "key")
    assert admitted.headers == {}
    await limiter.charge(admitted, 1_000)
    assert await redis.dbsize() == 0


async def test_budgets_expire_once_drained(redis: Redis, clock: Clock) -> None:
    limiter = RateLimiter(redis, RateLimits(key_rpm=60, account_tpm=1_000), clock=clock)
    await limiter.charge(await limiter.admit("acct", "key"), 1_500)
    requests, tokens = "orqen:ratelimit:{acct}:key:key:requests", "orqen:ratelimit:{acct}:account:tokens"
    # Keys share the account's hash tag, so one script's keys share a Redis Cluster slot.
    assert set(await redis.keys("*")) == {requests.encode(), tokens.encode()}
    assert 0 < await redis.pttl(requests) <= 2_000  # 1 request drains in 1 s
    assert 90_000 < await redis.pttl(tokens) <= 91_000  # 1500 tokens drain in 90 s


# ---- through the edge: headers, the 429 in each SDK's shape, the request event -------------------------------------

KEY = "sk-orq-rate-limit-test"
COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 600, "completion_tokens": 500, "total_tokens": 1100},
}
SUMMARY = dispatch_pb2.DispatchSummary(
    provider="openai", model="gpt-4o-mini", usage=common_pb2.Usage(input_tokens=600, output_tokens=500)
)


class FakeDispatch:
    """Stands in for the gRPC Downstream: every call costs 600 + 500 tokens."""

    async def complete(self, request: dispatch_pb2.CompleteRequest) -> dispatch_pb2.CompleteResponse:
        return dispatch_pb2.CompleteResponse(response_json=orjson.dumps(COMPLETION), summary=SUMMARY)

    async def stream(self, request: dispatch_pb2.CompleteRequest) -> AsyncIterator[dispatch_pb2.StreamEvent]:
        base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini"}
        chunks = [
            {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "hi"}, "finish_reason": None}]},
            {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
            {**base, "choices": [], "usage": COMPLETION["usage"]},
        ]
        for chunk in chunks:  # one a message, as a paced stream comes; the summary with the last
            yield dispatch_pb2.StreamEvent(
                chunks=[orjson.dumps(chunk)], summary=SUMMARY if chunk is chunks[-1] else None
            )


@dataclass
class RecordingPublisher:
    events: list[events_pb2.RequestCompleted] = field(default_factory=list)

    def publish(self, name: str, payload: bytes, msg_id: str) -> None:
        self.events.append(events_pb2.RequestCompleted.FromString(payload))


@dataclass
class Edge:
    runtime: Runtime
    http: httpx2.AsyncClient
    published: RecordingPublisher

    def openai(self) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url="http://edge/v1", api_key=KEY, http_client=self.http, max_retries=0)

    def anthropic(self) -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic(base_url="http://edge", api_key=KEY, http_client=self.http, max_retries=0)


@pytest.fixture
async def edge(open_runtime: OpenRuntime, clock: Clock) -> AsyncIterator[Edge]:
    runtime = await open_runtime(KEY, rate_limit_key_rpm=3, rate_limit_key_tpm=1_000)
    published = RecordingPublisher()
    runtime.downstream = FakeDispatch()  # type: ignore[assignment]
    runtime.publisher = published  # type: ignore[assignment]
    runtime.rate_limiter = RateLimiter(runtime.redis, RateLimits.from_settings(runtime.settings), clock=clock)
    # The SDKs speak httpx2; its ASGI transport runs the app on this test's event loop.
    transport = httpx2.ASGITransport(app=RequestContextMiddleware(create_app(runtime)))
    async with httpx2.AsyncClient(transport=transport, base_url="http://edge") as http:
        yield Edge(runtime, http, published)


MESSAGES: Any = [{"role": "user", "content": "hi"}]


async def test_chat_answers_carry_the_limits_and_a_spent_budget_is_a_429_in_each_sdks_shape(
    edge: Edge, clock: Clock
) -> None:
    raw = await edge.openai().chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    assert raw.parse().choices[0].message.content == "hi"
    assert {k: v for k, v in raw.headers.items() if k.startswith("x-ratelimit-")} == {
        "x-ratelimit-limit-requests": "3",
        "x-ratelimit-remaining-requests": "2",
        "x-ratelimit-reset-requests": "20s",
        "x-ratelimit-limit-tokens": "1000",
        "x-ratelimit-remaining-tokens": "1000",  # as admitted; the answer's 1100 tokens are charged after it
        "x-ratelimit-reset-tokens": "0s",
    }

    with pytest.raises(openai.RateLimitError) as openai_err:
        await edge.openai().chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert openai_err.value.status_code == 429 and openai_err.value.code == "rate_limit_exceeded"
    assert openai_err.value.body == {
        "message": "Rate limit reached for API key: 1000 tokens per minute.",
        "type": "rate_limit_error",
        "param": None,
        "code": "rate_limit_exceeded",
    }
    headers = openai_err.value.response.headers
    assert (headers["retry-after"], headers["retry-after-ms"]) == ("7", "6060")
    assert (headers["x-ratelimit-remaining-tokens"], headers["x-ratelimit-remaining-requests"]) == ("0", "2")

    with pytest.raises(anthropic.RateLimitError) as anthropic_err:
        await edge.anthropic().messages.create(model="claude-haiku-4-5", max_tokens=10, messages=MESSAGES)
    assert anthropic_err.value.body == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "Rate limit reached for API key: 1000 tokens per minute."},
    }
    assert anthropic_err.value.response.headers["retry-after"] == "7"

    bedrock = await edge.http.post(
        "/model/anthropic.claude-3-haiku/converse",
        json={"messages": [{"role": "user", "content": [{"text": "hi"}]}]},
        headers={"authorization": f"Bearer {KEY}"},
    )
    assert bedrock.status_code == 429 and bedrock.headers["x-amzn-errortype"] == "ThrottlingException"
    assert bedrock.json() == {"message": "Rate limit reached for API key: 1000 tokens per minute."}
    assert bedrock.headers["x-ratelimit-limit-tokens"] == "1000"

    # Every request is still recorded, the refused ones as 429s.
    statuses = [(e.status, e.context.ingress, e.model_requested) for e in edge.published.events]
    assert statuses == [
        (200, "openai", "gpt-4o-mini"),
        (429, "openai", "gpt-4o-mini"),
        (429, "anthropic", "claude-haiku-4-5"),
        (429, "bedrock", "bedrock/anthropic.claude-3-haiku"),
    ]
    assert edge.published.events[1].error == "Rate limit reached for API key: 1000 tokens per minute."

    clock.advance(7)
    completion = await edge.openai().chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert completion.usage is not None and completion.usage.total_tokens == 1100


async def test_a_stream_is_charged_when_it_ends(edge: Edge) -> None:
    async with edge.openai().chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True
    ) as response:
        assert response.headers["x-ratelimit-remaining-requests"] == "2"
        chunks = [chunk async for chunk in await response.parse()]
    assert chunks[0].choices[0].delta.content == "hi"

    with pytest.raises(openai.RateLimitError) as err:
        await edge.openai().chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    assert "1000 tokens per minute" in err.value.message


async def test_an_unreachable_redis_never_fails_a_chat(edge: Edge) -> None:
    dead = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0")
    edge.runtime.rate_limiter = RateLimiter(dead, RateLimits(key_rpm=1, key_tpm=1))
    try:
        for _ in range(3):
            raw = await edge.openai().chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
            assert raw.http_response.status_code == 200
            assert not any(k.startswith("x-ratelimit-") for k in raw.headers)
    finally:
        await dead.aclose()
