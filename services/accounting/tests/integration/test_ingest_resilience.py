"""No event lost and none counted twice while the pieces under the ledger fail mid-stream.

Each test streams a few thousand request events and, while they are being written, kills the
accounting process (SIGKILL, twice), restarts NATS, or restarts Postgres; afterwards it counts
the rows and the rollups exactly. The servers restarted here are the test's own (embedded,
real); nothing shared with other tests is stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import asyncpg
import nats
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from orqen.v1 import common_pb2, dispatch_pb2, events_pb2
from orqen_accounting.__main__ import MIGRATIONS, SCHEMA
from orqen_accounting.ingest import RequestIngest
from orqen_accounting.ledger import Ledger
from orqen_common.db import create_pool
from orqen_common.events import REQUEST_COMPLETED, DurableConsumer, EventNames, EventPublisher, ensure_stream
from orqen_common.migrations import upgrade_to_head
from orqen_common.prices import Prices
from orqen_stack.embedded import start_nats, start_postgres
from orqen_stack.procs import free_port

EVENTS = 3000
ACCOUNTS = [str(uuid.uuid4()) for _ in range(3)]


def events(count: int = EVENTS) -> list[events_pb2.RequestCompleted]:
    now = Timestamp()
    now.FromDatetime(dt.datetime.now(dt.UTC))
    return [
        events_pb2.RequestCompleted(
            context=common_pb2.RequestContext(
                request_id=f"req_{i:06d}",
                account_id=ACCOUNTS[i % len(ACCOUNTS)],
                session_id=f"s{i % 50}",
                ingress="openai",
            ),
            created_at=now,
            model_requested="gpt-4o-mini",
            status=200 if i % 10 else 500,
            latency_ms=50.0 + i % 100,
            dispatch=dispatch_pb2.DispatchSummary(
                provider="openai", model="gpt-4o-mini", usage=common_pb2.Usage(input_tokens=100, output_tokens=10)
            ),
            tools_offered=["get_weather", "search"],
            tools_forwarded=["get_weather"],
        )
        for i in range(count)
    ]


async def publish_directly(url: str, names: EventNames, batch: list[events_pb2.RequestCompleted]) -> None:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await ensure_stream(js, names)
        subject = names.subject(REQUEST_COMPLETED)
        for i in range(0, len(batch), 500):
            await asyncio.gather(
                *(
                    js.publish(subject, e.SerializeToString(), headers={"Nats-Msg-Id": e.context.request_id})
                    for e in batch[i : i + 500]
                )
            )
    finally:
        await nc.close()


async def wait_for(check: Callable[[], Awaitable[bool]], seconds: float = 120.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.05)


async def count(url: str, sql: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval(sql) or 0)
    finally:
        await conn.close()


async def assert_counted_exactly_once(url: str, expected: int = EVENTS) -> None:
    """Every request stored once, and counted once in every rollup."""
    rows = "SELECT count(*) FROM accounting.requests"
    await wait_for(lambda: _reached(url, rows, expected))
    await asyncio.sleep(1.0)  # anything still redelivered would land now
    assert await count(url, rows) == expected
    assert await count(url, "SELECT count(DISTINCT request_id) FROM accounting.requests") == expected
    assert await count(url, "SELECT sum(requests) FROM accounting.usage_daily") == expected
    assert await count(url, "SELECT sum(errors) FROM accounting.usage_daily") == expected // 10
    assert await count(url, "SELECT sum(input_tokens) FROM accounting.usage_daily") == expected * 100
    assert await count(url, "SELECT sum(requests) FROM accounting.sessions") == expected
    assert await count(url, "SELECT sum(offered) FROM accounting.tool_usage_daily") == expected * 2
    assert await count(url, "SELECT sum(forwarded) FROM accounting.tool_usage_daily") == expected


async def _reached(url: str, sql: str, expected: int) -> bool:
    return await count(url, sql) >= expected


@contextlib.asynccontextmanager
async def consuming(database_url: str, nats_url: str, names: EventNames) -> AsyncIterator[None]:
    """The accounting consumer, in process, for as long as the block runs."""
    pool = await create_pool(database_url, 4, SCHEMA)
    stop = asyncio.Event()
    consumer = DurableConsumer(
        nats_url,
        names,
        "accounting",
        REQUEST_COMPLETED,
        RequestIngest(Ledger(pool), Prices()),
        batch=250,
        max_wait=0.2,
        ack_wait=3.0,
    )
    task = asyncio.create_task(consumer.run(stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await pool.close()


def start_accounting(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "orqen_accounting"], env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT
        )


async def test_an_accounting_process_killed_mid_batch_loses_and_doubles_nothing(
    orqen_database_url: str, orqen_nats_url: str, orqen_nats_prefix: str, orqen_redis_db_url: str, tmp_path: Path
) -> None:
    upgrade_to_head(orqen_database_url, SCHEMA, MIGRATIONS)
    names = EventNames(orqen_nats_prefix)
    await publish_directly(orqen_nats_url, names, events())
    env = {
        "ORQEN_DATABASE_URL": orqen_database_url,
        "ORQEN_NATS_URL": orqen_nats_url,
        "ORQEN_NATS_PREFIX": orqen_nats_prefix,
        "ORQEN_REDIS_URL": orqen_redis_db_url,
        "ORQEN_INTERNAL_TOKEN": "internal",
        "ORQEN_ACCOUNTING_ADDR": f"127.0.0.1:{free_port()}",
        "ORQEN_METRICS_PORT": "0",
        "ORQEN_INGEST_BATCH": "100",
        "ORQEN_INGEST_ACK_WAIT_SECONDS": "2",
        "ORQEN_LOG_LEVEL": "WARNING",
    }
    rows = "SELECT count(*) FROM accounting.requests"
    for share in (0.2, 0.6):
        process = start_accounting(env, tmp_path / "accounting.log")
        try:
            await wait_for(lambda share=share: _reached(orqen_database_url, rows, int(EVENTS * share)))
        finally:
            process.send_signal(signal.SIGKILL)  # no shutdown, no acks: a crash between commit and ack
            process.wait(10)
        assert await count(orqen_database_url, rows) < EVENTS
    process = start_accounting(env, tmp_path / "accounting.log")
    try:
        await assert_counted_exactly_once(orqen_database_url)
    finally:
        process.terminate()
        process.wait(30)


async def test_a_nats_restart_mid_stream_loses_and_doubles_nothing(orqen_database_url: str, tmp_path: Path) -> None:
    upgrade_to_head(orqen_database_url, SCHEMA, MIGRATIONS)
    server = start_nats(tmp_path / "nats")
    port, names = server.port, EventNames("restart")
    # The edge's publisher: a bounded buffer that keeps retrying while NATS is away.
    publisher = EventPublisher(server.url, names, "edge", max_buffer=EVENTS)
    publisher.start()
    try:
        async with consuming(orqen_database_url, server.url, names):
            stream = events()
            for i, event in enumerate(stream):
                publisher.publish(REQUEST_COMPLETED, event.SerializeToString(), event.context.request_id)
                if i == EVENTS // 3:
                    await asyncio.sleep(0.5)
                    server.stop()  # mid-stream: some events written, some in flight, the rest still to come
                if i % 100 == 0:
                    await asyncio.sleep(0.02)
                if i == 2 * EVENTS // 3:
                    server = start_nats(tmp_path / "nats", port=port)
            await publisher.close(grace=60)
            await assert_counted_exactly_once(orqen_database_url)
    finally:
        server.stop()


@pytest.fixture
def pg_dir() -> Iterator[Path]:
    """A data folder outside pytest's temp root: postgres runs as another user, and any pytest
    session starting on the machine resets that root to 0700, which would lock a restart out."""
    with tempfile.TemporaryDirectory(prefix="orqen-pg-") as folder:
        yield Path(folder) / "pg"


async def test_a_postgres_restart_mid_stream_loses_and_doubles_nothing(
    orqen_nats_url: str, orqen_nats_prefix: str, pg_dir: Path
) -> None:
    pg = start_postgres(pg_dir)
    try:
        upgrade_to_head(pg.url, SCHEMA, MIGRATIONS)
        names = EventNames(orqen_nats_prefix)
        await publish_directly(orqen_nats_url, names, events())
        rows = "SELECT count(*) FROM accounting.requests"
        async with consuming(pg.url, orqen_nats_url, names):
            await wait_for(lambda: _reached(pg.url, rows, EVENTS // 4))
            pg.stop()  # the batch being written fails or its commit is lost: it is redelivered
            await asyncio.sleep(1.0)
            pg = start_postgres(pg_dir, port=pg.port)
            await assert_counted_exactly_once(pg.url)
    finally:
        pg.stop()
