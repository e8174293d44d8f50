"""The response cache's own cost on the request path: one lookup, as dispatch makes it.

A lookup is the key (SHA-256 of the resolved model and the forwarded request, normalized) and
one Redis round trip (a Lua script: GET, and on a hit the LRU bump). It is measured here in
process against the stack's Redis, for a miss and for a hit, on the bench's small request.
"""

from __future__ import annotations

import statistics
import time
import uuid

import orjson
from redis.asyncio import Redis

from orqen_common.canonical import TokenUsage
from orqen_common.formats.openai import AnswerMessage, ChatCompletion, Choice, decode_request
from orqen_dispatch.cached_answer import cached_answer
from orqen_dispatch.response_cache import ResponseCache, ResponseCacheSettings, cache_key

_REQUEST = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 64}


async def lookup_cost(redis_url: str, lookups: int = 2000) -> dict[str, tuple[float, float]]:
    """(p50, p99) milliseconds of a lookup that misses and of one that hits, key computation included."""
    redis = Redis.from_url(redis_url)
    cache = ResponseCache(redis, ResponseCacheSettings())
    account = str(uuid.uuid4())
    answer = ChatCompletion(
        id="chatcmpl-bench",
        created=0,
        model="gpt-4o-mini",
        choices=[Choice(message=AnswerMessage(content="echo: hello"), finish_reason="stop")],
    )
    stored = cached_answer("openai", "gpt-4o-mini", TokenUsage(32, 7, 10), answer)
    body = orjson.dumps(_REQUEST)
    hit_key = cache_key(account, "openai:gpt-4o-mini", decode_request(body))
    await cache.put(hit_key, stored, ttl_seconds=600)
    results: dict[str, tuple[float, float]] = {}
    try:
        for outcome, model in (("miss", "openai:gpt-4o"), ("hit", "openai:gpt-4o-mini")):
            samples = []
            for _ in range(lookups):
                started = time.perf_counter()
                found = await cache.get(cache_key(account, model, decode_request(body)))
                samples.append((time.perf_counter() - started) * 1000)
                assert (found is not None) == (outcome == "hit")
            cuts = statistics.quantiles(samples, n=100, method="inclusive")
            results[outcome] = (cuts[49], cuts[98])
    finally:
        await cache.purge(account)
        await redis.aclose()
    return results
