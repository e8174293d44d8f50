"""AccountCache against a real Redis: one read per account and counter value, kept until it changes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from orqen_common.account_cache import AccountCache
from orqen_common.cache import account_config_key

ACCOUNT = "acct-cache-test"


class Settings:
    """A loader that counts its reads, answers with the read's number, and waits for `gate` when set."""

    def __init__(self) -> None:
        self.reads = 0
        self.complete = True
        self.gate: asyncio.Event | None = None
        self.started = asyncio.Event()

    async def load(self, account_id: str, previous: int | None) -> tuple[int, bool]:
        self.reads += 1
        read = self.reads
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        return read, self.complete


@pytest.fixture
async def redis(orqen_redis_db_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(orqen_redis_db_url)
    yield client
    await client.aclose()


async def test_requests_that_miss_together_share_one_read_even_if_one_gives_up(redis: Redis) -> None:
    settings = Settings()
    cache = AccountCache(redis, settings.load, ttl_seconds=60)
    settings.gate = gate = asyncio.Event()
    waiting = [asyncio.create_task(cache.get(ACCOUNT)) for _ in range(10)]
    await settings.started.wait()
    waiting[0].cancel()
    gate.set()
    assert await asyncio.gather(*waiting[1:]) == [1] * 9
    assert await cache.get(ACCOUNT) == 1 and settings.reads == 1


async def test_a_change_is_read_at_once_and_never_joins_a_read_that_started_before_it(redis: Redis) -> None:
    settings = Settings()
    cache = AccountCache(redis, settings.load, ttl_seconds=60)
    settings.gate = gate = asyncio.Event()
    before = asyncio.create_task(cache.get(ACCOUNT))
    await settings.started.wait()
    await redis.incr(account_config_key(ACCOUNT))  # what accounting does on every change
    settings.gate = None
    async with asyncio.timeout(10):  # joined to the read under way, it would wait for ever
        assert await cache.get(ACCOUNT) == 2
    gate.set()
    assert await before == 1
    assert await cache.get(ACCOUNT) == 2 and settings.reads == 2, "the older read was not kept"


async def test_an_incomplete_read_is_used_once_and_not_kept(redis: Redis) -> None:
    settings = Settings()
    settings.complete = False
    cache = AccountCache(redis, settings.load, ttl_seconds=60)
    assert [await cache.get(ACCOUNT), await cache.get(ACCOUNT)] == [1, 2]
