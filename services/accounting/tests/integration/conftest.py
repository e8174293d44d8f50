import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import asyncpg
import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from redis.asyncio import Redis

from orqen.v1 import accounting_pb2_grpc, common_pb2, dispatch_pb2, events_pb2
from orqen_accounting.__main__ import MIGRATIONS, SCHEMA
from orqen_accounting.ingest import request_row
from orqen_accounting.ledger import Ledger
from orqen_accounting.repository import AccountingRepository
from orqen_accounting.routing_stats import RoutingStats
from orqen_accounting.servicer import AccountingServicer, verify_api_key_locally
from orqen_accounting.usage import UsageStats
from orqen_common.cache import AuthCacheKeys
from orqen_common.context import Principal
from orqen_common.db import create_pool
from orqen_common.grpc_client import open_channel
from orqen_common.grpc_server import ServerInterceptor
from orqen_common.migrations import upgrade_to_head
from orqen_common.prices import Prices

Connect = Callable[..., AbstractAsyncContextManager[accounting_pb2_grpc.AccountingStub]]


@pytest.fixture
async def pool(orqen_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    upgrade_to_head(orqen_database_url, SCHEMA, MIGRATIONS)
    pool = await create_pool(orqen_database_url, 4, SCHEMA)
    yield pool
    await pool.close()


@pytest.fixture
def repo(pool: asyncpg.Pool) -> AccountingRepository:
    return AccountingRepository(pool)


Record = Callable[[list[events_pb2.RequestCompleted]], Awaitable[int]]


@pytest.fixture
def record(pool: asyncpg.Pool) -> Record:
    """`await record(events)`: the events through the ledger as the consumer writes them; returns how many were new."""
    ledger = Ledger(pool)

    async def write(events: list[events_pb2.RequestCompleted]) -> int:
        return await ledger.record([request_row(e, Prices()) for e in events])

    return write


def make_event(request_id: str, account_id: str, minute: int = 0, tokens: int = 10) -> events_pb2.RequestCompleted:
    created = Timestamp()
    created.FromDatetime(dt.datetime(2026, 11, 1, 12, minute, tzinfo=dt.UTC))
    return events_pb2.RequestCompleted(
        context=common_pb2.RequestContext(request_id=request_id, account_id=account_id, ingress="openai"),
        created_at=created,
        model_requested="gpt-4o-mini",
        status=200,
        dispatch=dispatch_pb2.DispatchSummary(
            provider="openai", model="gpt-4o-mini", usage=common_pb2.Usage(input_tokens=tokens, output_tokens=3)
        ),
    )


@pytest.fixture
def event() -> Callable[..., events_pb2.RequestCompleted]:
    """Builds a request.completed event: event(request_id, account_id, minute=0, tokens=10)."""
    return make_event


@pytest.fixture
def internal_token() -> str:
    """The token Orqen services present to each other (the servers below accept it)."""
    return "internal"


@pytest.fixture
async def auth_cache(orqen_redis_db_url: str) -> AsyncIterator[Redis]:
    """The test's own Redis database, standing in for the shared API-key auth cache."""
    client = Redis.from_url(orqen_redis_db_url)
    yield client
    await client.aclose()


@pytest.fixture
async def serve_accounting(
    repo: AccountingRepository, pool: asyncpg.Pool, internal_token: str
) -> AsyncIterator[Callable[[Redis], Awaitable[str]]]:
    """serve_accounting(auth_cache): a real accounting gRPC server (auth interceptor included) on the
    test's database; returns its address. The servers stop when the test ends."""
    servers: list[grpc.aio.Server] = []

    async def verify(key: str) -> Principal | None:
        return await verify_api_key_locally(repo, key)

    async def serve(auth_cache: Redis) -> str:
        server = grpc.aio.server(interceptors=[ServerInterceptor("accounting", internal_token, verify)])
        accounting_pb2_grpc.add_AccountingServicer_to_server(
            AccountingServicer(repo, RoutingStats(pool), UsageStats(pool), auth_cache, AuthCacheKeys(internal_token)),
            server,
        )
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        servers.append(server)
        return f"127.0.0.1:{port}"

    yield serve
    for server in servers:
        await server.stop(None)


@pytest.fixture
async def accounting_addr(serve_accounting: Callable[[Redis], Awaitable[str]], auth_cache: Redis) -> str:
    """Address of an accounting server using the test's auth cache."""
    return await serve_accounting(auth_cache)


@pytest.fixture
def connect(accounting_addr: str, internal_token: str) -> Connect:
    """`async with connect() as stub`: call as an Orqen service; `connect(key)`: as that sk-orq- key."""

    @asynccontextmanager
    async def stub(token: str | None = None) -> AsyncIterator[accounting_pb2_grpc.AccountingStub]:
        async with open_channel(accounting_addr, token or internal_token) as channel:
            yield accounting_pb2_grpc.AccountingStub(channel)

    return stub
