"""The change watch against a real Redis: announcements heard, a lost subscription noticed, and the
account cache that stops asking Redis per use while the watch hears every change."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from typing import Any

import pytest
from redis.asyncio import Redis

from orqen_common import changes
from orqen_common.account_cache import AccountCache
from orqen_common.cache import account_config_key
from orqen_common.changes import ACCOUNT, ChangeWatch, announce, open_change_watch

ACCOUNT_ID = "acct-watched"


async def until(condition: Callable[[], bool], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.01)


@pytest.fixture
async def redis(orqen_redis_db_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(orqen_redis_db_url)
    yield client
    await client.aclose()


WATCHER = f"orqen-watch-test-{uuid.uuid4().hex[:8]}"  # the watch's connections, by name


@pytest.fixture
async def watch(orqen_redis_db_url: str) -> AsyncIterator[ChangeWatch]:
    async with AsyncExitStack() as stack:
        own = Redis.from_url(orqen_redis_db_url, client_name=WATCHER)
        stack.push_async_callback(own.aclose)
        watch = open_change_watch(stack, own)
        await until(lambda: watch.current() is not None)
        yield watch


class CountingRedis:
    """The Redis calls AccountCache makes, counted."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self.gets = 0

    async def get(self, key: str) -> Any:
        self.gets += 1
        return await self.redis.get(key)


async def test_an_announced_change_is_made_then_heard(redis: Redis, watch: ChangeWatch) -> None:
    heard: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    watch.listen(lambda kind, subject: heard.put_nowait((kind, subject)))
    await announce(redis, ACCOUNT, ACCOUNT_ID, lambda pipe: pipe.incr(account_config_key(ACCOUNT_ID)))
    while (change := await asyncio.wait_for(heard.get(), 5)) != (ACCOUNT, ACCOUNT_ID):
        pass  # another test's stack may share this Redis's channel
    assert change == (ACCOUNT, ACCOUNT_ID) and await redis.get(account_config_key(ACCOUNT_ID)) == b"1"


async def test_a_lost_subscription_is_noticed_and_a_new_one_starts_a_new_epoch(
    redis: Redis, watch: ChangeWatch
) -> None:
    first = watch.current()
    assert first is not None
    # What a Redis restart or a dropped connection does to the subscriber.
    ours = [c for c in await redis.client_list(_type="pubsub") if c.get("name") == WATCHER]
    assert ours
    for client in ours:
        await redis.client_kill_filter(_id=client["id"])
    await until(lambda: watch.current() != first)
    await until(lambda: watch.current() is not None)
    assert (watch.current() or 0) > first


async def test_a_watch_that_has_not_heard_from_redis_lately_is_unsure(redis: Redis) -> None:
    now = [0.0]
    async with AsyncExitStack() as stack:
        watch = ChangeWatch(redis, clock=lambda: now[0])
        assert watch.current() is None  # not subscribed yet
        watch.start()
        stack.push_async_callback(watch.close)
        await until(lambda: watch.current() is not None)
        now[0] += changes.LIVENESS_SECONDS + 1  # no message and no answer to a ping since
        assert watch.current() is None


async def test_a_checked_copy_is_used_without_asking_redis_until_a_change_is_announced(
    redis: Redis, watch: ChangeWatch
) -> None:
    reads: list[str] = []

    async def load(account_id: str, previous: int | None) -> tuple[int, bool]:
        reads.append(account_id)
        return len(reads), True

    counting = CountingRedis(redis)
    cache = AccountCache(counting, load, ttl_seconds=60, watch=watch)  # type: ignore[arg-type]
    heard = asyncio.Event()
    watch.listen(lambda kind, subject: heard.set() if (kind, subject) == (ACCOUNT, ACCOUNT_ID) else None)
    assert await cache.get(ACCOUNT_ID) == 1 and counting.gets == 1
    assert [await cache.get(ACCOUNT_ID) for _ in range(5)] == [1] * 5
    assert counting.gets == 1 and reads == [ACCOUNT_ID]  # neither Redis nor accounting asked again
    await announce(redis, ACCOUNT, ACCOUNT_ID, lambda pipe: pipe.incr(account_config_key(ACCOUNT_ID)))
    await asyncio.wait_for(heard.wait(), 5)
    assert await cache.get(ACCOUNT_ID) == 2 and counting.gets == 2  # the counter moved: read again
    assert await cache.get(ACCOUNT_ID) == 2 and counting.gets == 2


async def test_without_a_sure_watch_every_use_checks_the_counter(redis: Redis) -> None:
    async def load(account_id: str, previous: int | None) -> tuple[int, bool]:
        return 1, True

    counting = CountingRedis(redis)
    unsubscribed = ChangeWatch(redis)  # never started: never sure it hears
    cache = AccountCache(counting, load, ttl_seconds=60, watch=unsubscribed)  # type: ignore[arg-type]
    for _ in range(3):
        assert await cache.get(ACCOUNT_ID) == 1
    assert counting.gets == 3


async def test_a_change_heard_while_a_copy_was_being_read_keeps_it_from_being_trusted(
    redis: Redis, watch: ChangeWatch
) -> None:
    gate, started = asyncio.Event(), asyncio.Event()

    async def load(account_id: str, previous: int | None) -> tuple[int, bool]:
        started.set()
        await gate.wait()
        return 1, True

    counting = CountingRedis(redis)
    cache = AccountCache(counting, load, ttl_seconds=60, watch=watch)  # type: ignore[arg-type]
    heard = asyncio.Event()
    watch.listen(lambda kind, subject: heard.set() if (kind, subject) == (ACCOUNT, "another") else None)
    reading = asyncio.create_task(cache.get(ACCOUNT_ID))
    await started.wait()
    # Any account's change announced meanwhile may have been one the read missed.
    await announce(redis, ACCOUNT, "another", lambda pipe: pipe.incr(account_config_key("another")))
    await asyncio.wait_for(heard.wait(), 5)
    gate.set()
    assert await reading == 1
    assert await cache.get(ACCOUNT_ID) == 1 and counting.gets == 2  # checked once more, then trusted
    assert await cache.get(ACCOUNT_ID) == 1 and counting.gets == 2
