"""Per-model latency and success averages in a real Redis: exact EWMA maths, batched writes, no lost update."""

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from fakes.serve import free_port
from orqen_dispatch.latency import ALPHA, KEY_PREFIX, TTL_SECONDS, LatencyStats, ModelStats

MODEL = "bedrock/anthropic.claude-3-haiku-20240307-v1:0"


@pytest.fixture
async def redis(orqen_redis_db_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(orqen_redis_db_url)
    yield client
    await client.aclose()


def ewma(values: list[float]) -> float:
    average = values[0]
    for value in values[1:]:
        average += ALPHA * (value - average)
    return average


async def test_record_keeps_exponentially_weighted_averages_and_a_count(redis: Redis) -> None:
    stats = LatencyStats(redis)
    calls = [(100.0, True), (200.0, True), (5000.0, False), (50.0, True)]
    for latency, ok in calls:
        stats.record(MODEL, latency, ok)
    await stats.flush()
    snapshot = await stats.snapshot([MODEL])
    measured = snapshot[MODEL]
    assert measured.calls == 4
    # A failure moves the success average but not the latency one.
    assert measured.latency_ms == pytest.approx(ewma([100.0, 200.0, 50.0]))
    assert measured.success_rate == pytest.approx(ewma([1.0, 1.0, 0.0, 1.0]))


async def test_a_model_that_never_succeeded_has_no_latency_yet(redis: Redis) -> None:
    stats = LatencyStats(redis)
    stats.record("gpt-4o", 30.0, False)
    await stats.flush()
    assert (await stats.snapshot(["gpt-4o"]))["gpt-4o"] == ModelStats(latency_ms=0.0, success_rate=0.0, calls=1)


async def test_keys_are_per_model_and_expire_after_seven_days(redis: Redis) -> None:
    stats = LatencyStats(redis)
    stats.record(MODEL, 10.0, True)
    stats.record("gpt-4o-mini", 20.0, True)
    await stats.flush()
    assert set(await redis.keys(KEY_PREFIX + "*")) == {
        (KEY_PREFIX + MODEL).encode(),
        (KEY_PREFIX + "gpt-4o-mini").encode(),
    }
    ttl = await redis.ttl(KEY_PREFIX + MODEL)
    assert TTL_SECONDS - 60 < ttl <= TTL_SECONDS == 7 * 24 * 3600


async def test_snapshot_leaves_out_models_never_measured(redis: Redis) -> None:
    stats = LatencyStats(redis)
    stats.record("gpt-4o", 250.0, True)
    await stats.flush()
    snapshot = await stats.snapshot(["gpt-4o", "claude-haiku-4-5", "gpt-4o"])
    assert snapshot == {"gpt-4o": ModelStats(latency_ms=250.0, success_rate=1.0, calls=1)}
    assert await stats.snapshot([]) == {}


async def test_concurrent_records_from_many_connections_lose_no_update(orqen_redis_db_url: str) -> None:
    # Several replicas (clients), each with many calls in flight. After a seed, every concurrent
    # call carries the same value, so any serial order gives the same averages: 1000 * 0.8^n and
    # 0.8^n. A lost read-modify-write would leave them far higher.
    clients = [Redis.from_url(orqen_redis_db_url) for _ in range(4)]
    per_replica = 25
    n = len(clients) * per_replica
    try:
        replicas = [LatencyStats(client) for client in clients]
        replicas[0].record("fast-model", 1000.0, ok=True)
        replicas[0].record("flaky-model", 10.0, ok=True)
        await replicas[0].flush()
        for replica in replicas:
            for _ in range(per_replica):
                replica.record("fast-model", 0.0, ok=True)
                replica.record("flaky-model", 10.0, ok=False)
        await asyncio.gather(*(replica.flush() for replica in replicas))  # every replica's batch at once
        snapshot = await replicas[0].snapshot(["fast-model", "flaky-model"])
    finally:
        for client in clients:
            await client.aclose()
    fast, flaky = snapshot["fast-model"], snapshot["flaky-model"]
    assert (fast.calls, flaky.calls) == (n + 1, n + 1)
    assert fast.latency_ms == pytest.approx(1000.0 * (1 - ALPHA) ** n, rel=1e-6)
    assert fast.success_rate == 1.0
    assert flaky.success_rate == pytest.approx((1 - ALPHA) ** n, rel=1e-6)
    assert flaky.latency_ms == 10.0


async def test_redis_being_down_is_logged_and_ignored() -> None:
    client = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5)
    try:
        stats = LatencyStats(client)
        stats.record(MODEL, 100.0, True)
        await stats.flush()  # no exception
        assert await stats.snapshot([MODEL]) == {}
    finally:
        await client.aclose()


async def test_recorded_calls_are_written_together_within_the_flush_interval(redis: Redis) -> None:
    stats = LatencyStats(redis, flush_seconds=0.05)
    for latency in (10.0, 20.0, 30.0):
        stats.record(MODEL, latency, True)
    assert await stats.snapshot([MODEL]) == {}  # not written yet: they wait for the others
    for _ in range(100):
        await asyncio.sleep(0.02)
        if MODEL in (snapshot := await stats.snapshot([MODEL])):
            break
    assert snapshot[MODEL].calls == 3 and snapshot[MODEL].latency_ms == pytest.approx(ewma([10.0, 20.0, 30.0]))
    stats.record(MODEL, 40.0, False)
    await stats.close()  # at shutdown, what waits is written
    assert (await stats.snapshot([MODEL]))[MODEL].calls == 4
