"""The response cache in a real Redis: hits, TTLs, per-account LRU eviction within a byte cap,
purges, isolation between accounts, failing open; and the servicer answering from it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass

import orjson
import pytest
from redis.asyncio import Redis

from orqen.v1 import common_pb2, dispatch_pb2
from orqen_common.canonical import TokenUsage
from orqen_common.formats.openai import (
    AnswerMessage,
    ChatCompletion,
    ChatCompletionChunk,
    Choice,
    ChunkChoice,
    CompletionUsage,
    Delta,
    chunk_decoder,
    completion_decoder,
    decode_request,
)
from orqen_dispatch.account_config import AccountConfig
from orqen_dispatch.cached_answer import CachedAnswer, cached_answer, entry_encoder
from orqen_dispatch.providers.base import Completion, StreamState
from orqen_dispatch.response_cache import CacheKey, CacheUsage, ResponseCache, ResponseCacheSettings, cache_key
from orqen_dispatch.router import ProviderRouter
from orqen_dispatch.servicer import DispatchServicer

A = "00000000-0000-0000-0000-0000000000a1"
B = "00000000-0000-0000-0000-0000000000b2"
USAGE = TokenUsage(input=32, output=7, cache_read=10)


@pytest.fixture
async def redis(orqen_redis_db_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(orqen_redis_db_url)
    yield client
    await client.aclose()


def settings(**values: object) -> ResponseCacheSettings:
    return ResponseCacheSettings.model_validate(values)


def answer(text: str) -> CachedAnswer:
    body = ChatCompletion(
        id="chatcmpl-1", created=1, model="gpt-4o-mini", choices=[Choice(message=AnswerMessage(content=text))]
    )
    return cached_answer("openai", "gpt-4o-mini", USAGE, body)


def key(account: str, question: str) -> CacheKey:
    chat = decode_request(orjson.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": question}]}))
    return cache_key(account, "openai:gpt-4o-mini", chat)


async def test_a_stored_answer_is_found_until_its_ttl_and_only_by_its_account(redis: Redis) -> None:
    cache = ResponseCache(redis, settings())
    assert await cache.get(key(A, "q")) is None
    assert await cache.put(key(A, "q"), answer("forty-two"), ttl_seconds=120)
    hit = await cache.get(key(A, "q"))
    assert hit is not None and hit.completion.choices[0].message.content == "forty-two"
    assert 0 < await redis.ttl(key(A, "q").entry) <= 120
    # The same request from another account is another key: never shared.
    assert await cache.get(key(B, "q")) is None
    assert (await cache.usage(A)).entries == 1 and (await cache.usage(B)).entries == 0


async def test_an_account_over_its_byte_cap_loses_its_least_recently_used_answers(redis: Redis) -> None:
    size = len(entry_encoder.encode(answer("x" * 100)))  # every entry here is this long
    cache = ResponseCache(redis, settings(response_cache_account_bytes=size * 3))
    for question in ("q1", "q2", "q3"):
        assert await cache.put(key(A, question), answer("x" * 100), ttl_seconds=600)
    assert await cache.get(key(A, "q1")) is not None  # q1 used again: q2 is now the least recently used
    assert await cache.put(key(A, "q4"), answer("x" * 100), ttl_seconds=600)
    assert await cache.get(key(A, "q2")) is None
    for kept in ("q1", "q3", "q4"):
        assert await cache.get(key(A, kept)) is not None
    held = await cache.usage(A)
    assert (held.entries, held.bytes) == (3, size * 3)
    # Another account's answers are never evicted for A's.
    assert await cache.put(key(B, "q1"), answer("b"), ttl_seconds=600)
    assert await cache.put(key(A, "q5"), answer("x" * 100), ttl_seconds=600)
    assert await cache.get(key(B, "q1")) is not None


async def test_an_answer_larger_than_the_entry_cap_is_not_stored(redis: Redis) -> None:
    cache = ResponseCache(redis, settings(response_cache_entry_bytes=500))
    assert not await cache.put(key(A, "big"), answer("x" * 1000), ttl_seconds=60)
    assert await cache.get(key(A, "big")) is None


async def test_an_expired_entry_leaves_no_bookkeeping_once_looked_up(redis: Redis) -> None:
    cache = ResponseCache(redis, settings())
    assert await cache.put(key(A, "q"), answer("soon gone"), ttl_seconds=60)
    await redis.delete(key(A, "q").entry)  # what its TTL does
    assert await cache.get(key(A, "q")) is None
    assert await cache.usage(A) == CacheUsage(entries=0, bytes=0)


async def test_a_purge_empties_only_the_account(redis: Redis) -> None:
    cache = ResponseCache(redis, settings())
    for question in ("q1", "q2"):
        await cache.put(key(A, question), answer("a"), ttl_seconds=600)
    await cache.put(key(B, "q1"), answer("b"), ttl_seconds=600)
    purged = await cache.purge(A)
    assert purged.entries == 2 and purged.bytes > 0
    assert await cache.get(key(A, "q1")) is None and (await cache.usage(A)).entries == 0
    assert await cache.get(key(B, "q1")) is not None


async def test_redis_down_is_a_miss_and_a_dropped_store_never_an_error() -> None:
    unreachable = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    cache = ResponseCache(unreachable, settings())
    assert await cache.get(key(A, "q")) is None
    assert not await cache.put(key(A, "q"), answer("a"), ttl_seconds=60)
    await unreachable.aclose()


# --- the servicer answering from the cache ----------------------------------------------------


@dataclass
class CountingProvider:
    """Answers "fresh answer N" (N counts the calls), as a completion or a stream."""

    name: str = "openai"
    calls: int = 0

    def _answer(self) -> str:
        self.calls += 1
        return f"fresh answer {self.calls}"

    async def complete(self, chat: object, model: str, credentials: Mapping[str, str]) -> Completion:
        body = ChatCompletion(
            id="chatcmpl-up",
            created=1,
            model=model,
            choices=[Choice(message=AnswerMessage(content=self._answer()), finish_reason="stop")],
            usage=CompletionUsage(prompt_tokens=42, completion_tokens=7, total_tokens=49),
        )
        return Completion(body=body, usage=USAGE, status=200)

    async def stream(
        self, chat: object, model: str, credentials: Mapping[str, str], state: StreamState
    ) -> AsyncIterator[ChatCompletionChunk]:
        text = self._answer()
        state.status = 200
        for piece in (text[:5], text[5:]):
            yield ChatCompletionChunk(
                id="up", created=1, model=model, choices=[ChunkChoice(delta=Delta(content=piece))]
            )
        yield ChatCompletionChunk(
            id="up", created=1, model=model, choices=[ChunkChoice(delta=Delta(), finish_reason="stop")]
        )
        state.usage = USAGE
        yield ChatCompletionChunk(id="up", created=1, model=model, choices=[], usage=CompletionUsage())


@dataclass
class Gateway:
    servicer: DispatchServicer
    provider: CountingProvider
    cache: ResponseCache

    async def settle(self) -> None:
        """Wait for the stores the servicer left to run off the request's path."""
        await asyncio.gather(*self.cache._storing)


@pytest.fixture
def gateway(dispatch_servicer: Callable[..., DispatchServicer], redis: Redis) -> Callable[..., Gateway]:
    def build(enabled: bool = False) -> Gateway:
        provider = CountingProvider()
        cache = ResponseCache(redis, settings())
        router = ProviderRouter({"openai": provider}, "openai")  # type: ignore[dict-item]
        servicer = dispatch_servicer(router, AccountConfig({}, cache_enabled=enabled), ("openai",), cache)
        return Gateway(servicer, provider, cache)

    return build


def request(
    account: str, question: str, cache: str = "", stream: bool = False, batches: bool = True
) -> dispatch_pb2.CompleteRequest:
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": question}], "stream": stream}
    return dispatch_pb2.CompleteRequest(
        context=common_pb2.RequestContext(request_id="req_c", account_id=account, ingress="openai"),
        chat_json=orjson.dumps(chat),
        cache=cache,
        chunk_batches=stream and batches,
    )


async def complete(g: Gateway, call: dispatch_pb2.CompleteRequest) -> tuple[str, dispatch_pb2.DispatchSummary]:
    response = await g.servicer.Complete(call, None)  # type: ignore[arg-type]
    await g.settle()
    return completion_decoder.decode(response.response_json).choices[0].message.content or "", response.summary


async def stream(g: Gateway, call: dispatch_pb2.CompleteRequest) -> tuple[list[dispatch_pb2.StreamEvent], str]:
    events = [event async for event in g.servicer.Stream(call, None)]  # type: ignore[arg-type]
    await g.settle()
    text = "".join(
        choice.delta.content or ""
        for event in events
        for data in [*event.chunks, *([event.chunk_json] if event.chunk_json else [])]
        for choice in chunk_decoder.decode(data).choices
    )
    return events, text


async def test_a_repeated_request_is_answered_from_the_cache_without_calling_upstream(
    gateway: Callable[..., Gateway],
) -> None:
    g = gateway(enabled=True)
    text, first = await complete(g, request(A, "what is up"))
    assert (text, first.cache, first.usage.input_tokens) == ("fresh answer 1", "miss", 42)
    text, again = await complete(g, request(A, "what is up"))
    assert (text, again.cache, g.provider.calls) == ("fresh answer 1", "hit", 1)
    # Nothing was spent on the hit; what it would have cost is kept apart.
    assert again.usage.input_tokens == 0 and again.cached_usage.input_tokens == 42
    assert again.cached_usage.output_tokens == 7 and again.model == "gpt-4o-mini" and not again.attempts


async def test_skip_refresh_and_the_account_default(gateway: Callable[..., Gateway]) -> None:
    off = gateway(enabled=False)
    assert (await complete(off, request(A, "q")))[1].cache == ""  # not opted in: not consulted
    assert (await complete(off, request(A, "q")))[1].cache == ""
    assert off.provider.calls == 2
    g = gateway(enabled=True)
    await complete(g, request(A, "q2"))
    assert (await complete(g, request(A, "q2", cache="skip")))[0] == "fresh answer 2"
    # refresh calls upstream and replaces the stored answer.
    text, refreshed = await complete(g, request(A, "q2", cache="refresh"))
    assert (text, refreshed.cache) == ("fresh answer 3", "miss")
    assert (await complete(g, request(A, "q2")))[0] == "fresh answer 3"


async def test_another_account_never_gets_a_cached_answer(gateway: Callable[..., Gateway]) -> None:
    g = gateway(enabled=True)
    await complete(g, request(A, "shared question"))
    text, summary = await complete(g, request(B, "shared question"))
    assert (text, summary.cache, g.provider.calls) == ("fresh answer 2", "miss", 2)


async def test_a_streamed_answer_is_stored_and_replayed_as_a_stream_and_serves_json_too(
    gateway: Callable[..., Gateway],
) -> None:
    g = gateway(enabled=True)
    events, text = await stream(g, request(A, "stream me", stream=True))
    assert events[0].cache == "miss" and text == "fresh answer 1"
    events, text = await stream(g, request(A, "stream me", stream=True))
    assert (events[0].cache, text, g.provider.calls) == ("hit", "fresh answer 1", 1)
    summary = events[-1].summary
    assert summary.cache == "hit" and summary.cached_usage.input_tokens == USAGE.prompt
    last_chunk = chunk_decoder.decode(events[-1].chunks[-1])
    assert last_chunk.choices == [] and last_chunk.usage is not None  # a canonical stream ends with usage
    # The same request without streaming is the same key: the streamed answer serves it.
    answer_text, hit = await complete(g, request(A, "stream me"))
    assert (answer_text, hit.cache, g.provider.calls) == ("fresh answer 1", "hit", 1)


async def test_with_redis_down_a_request_that_uses_the_cache_is_answered_upstream(
    dispatch_servicer: Callable[..., DispatchServicer],
) -> None:
    provider = CountingProvider()
    unreachable = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    cache = ResponseCache(unreachable, settings())
    router = ProviderRouter({"openai": provider}, "openai")  # type: ignore[dict-item]
    g = Gateway(dispatch_servicer(router, AccountConfig({}, cache_enabled=True), ("openai",), cache), provider, cache)
    for expected in ("fresh answer 1", "fresh answer 2"):
        text, summary = await complete(g, request(A, "q"))
        assert (text, summary.cache) == (expected, "miss")
    events, text = await stream(g, request(A, "q", stream=True))
    assert (events[0].cache, text) == ("miss", "fresh answer 3")
    await unreachable.aclose()


async def test_a_caller_that_does_not_ask_for_batches_gets_a_chunk_a_message(gateway: Callable[..., Gateway]) -> None:
    """The shape Stream always had (an internal caller built before batches, or an edge mid-upgrade)."""
    g = gateway(enabled=True)
    batched, text = await stream(g, request(A, "shapes", stream=True))
    assert text == "fresh answer 1" and [bool(e.chunks) for e in batched] == [True] * len(batched)
    assert batched[0].cache == "miss" and batched[-1].HasField("summary")
    for question in ("shapes", "shapes again"):  # a hit, then a miss
        events, text = await stream(g, request(A, question, stream=True, batches=False))
        kinds = [[f.name for f, _ in e.ListFields()] for e in events]
        assert kinds == [["cache"], *[["chunk_json"]] * (len(events) - 2), ["summary"]]
        assert text == ("fresh answer 1" if question == "shapes" else "fresh answer 2")
        assert len(events) >= 5  # the text (in pieces when live), the finish and the usage chunk at least
