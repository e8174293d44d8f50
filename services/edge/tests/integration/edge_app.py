"""The real edge app over real accounting and billing gRPC servers (real Postgres, Redis), billing
either in local mode or on the Stripe fake: `start_edge`, shared by the dashboard-session tests."""

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from typing import Any

import asyncpg
import grpc
import httpx
import orjson
import pytest
from redis.asyncio import Redis

from fakes.stripe_api import StripeFake
from harness import billing_env
from orqen.v1 import accounting_pb2_grpc, billing_pb2_grpc
from orqen_accounting.__main__ import MIGRATIONS as ACCOUNTING_MIGRATIONS
from orqen_accounting.owners import OwnerRepository
from orqen_accounting.repository import AccountingRepository
from orqen_accounting.routing_stats import RoutingStats
from orqen_accounting.servicer import AccountingServicer, verify_api_key_locally
from orqen_accounting.usage import UsageStats
from orqen_billing.__main__ import MIGRATIONS as BILLING_MIGRATIONS
from orqen_billing.__main__ import stripe_parts
from orqen_billing.servicer import BillingServicer
from orqen_billing.settings import BillingSettings
from orqen_common.cache import AuthCacheKeys
from orqen_common.context import Principal
from orqen_common.db import create_pool
from orqen_common.grpc_server import ServerInterceptor
from orqen_common.migrations import upgrade_to_head
from orqen_edge.app import create_app
from orqen_edge.middleware import RequestContextMiddleware
from orqen_edge.runtime import Runtime
from orqen_edge.settings import EdgeSettings

TOKEN = "internal"
EMAIL, PASSWORD = "owner@acme.test", "correct horse battery staple"
JSON = {"content-type": "application/json"}


class Edge:
    """The edge under test, with the account it serves (and its owner EMAIL, PASSWORD)."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        account_id: str,
        api_key: str,
        billing_pool: asyncpg.Pool,
        accounting_pool: asyncpg.Pool,
    ) -> None:
        self.client = client
        self.account_id = account_id
        self.api_key = api_key
        self.billing_pool = billing_pool
        self.accounting_pool = accounting_pool

    async def login(self, password: str = PASSWORD) -> httpx.Response:
        return await self.client.post(
            "/v1/dashboard/login", content=orjson.dumps({"email": EMAIL.upper(), "password": password}), headers=JSON
        )

    async def post(self, path: str, body: Any = None, csrf: str | None = None, **headers: str) -> httpx.Response:
        if csrf is not None:
            headers["x-csrf-token"] = csrf
        return await self.client.post(path, content=orjson.dumps(body or {}), headers={**JSON, **headers})


@pytest.fixture(scope="module")
def stripe_fake() -> Iterator[StripeFake]:
    with StripeFake() as fake:
        yield fake


@pytest.fixture
async def start_edge(
    orqen_database_url: str, orqen_redis_db_url: str, orqen_nats_url: str, orqen_nats_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Callable[..., Awaitable[Edge]]]:  # fmt: skip
    stack = AsyncExitStack()

    async def start(stripe_url: str | None = None, **edge_settings: Any) -> Edge:
        upgrade_to_head(orqen_database_url, "accounting", ACCOUNTING_MIGRATIONS)
        upgrade_to_head(orqen_database_url, "billing", BILLING_MIGRATIONS)
        accounting_pool = await create_pool(orqen_database_url, 4, "accounting")
        billing_pool = await create_pool(orqen_database_url, 4, "billing")
        stack.push_async_callback(accounting_pool.close)
        stack.push_async_callback(billing_pool.close)
        redis = Redis.from_url(orqen_redis_db_url)
        stack.push_async_callback(redis.aclose)
        repo = AccountingRepository(accounting_pool)
        account = await repo.ensure_account("acme")
        key = await repo.create_key(account["id"], "k", None)
        await OwnerRepository(accounting_pool).create(account["id"], EMAIL, PASSWORD)

        async def verify(plaintext: str) -> Principal | None:
            return await verify_api_key_locally(repo, plaintext)

        monkeypatch.setenv("ORQEN_INTERNAL_TOKEN", TOKEN)
        monkeypatch.delenv("STRIPE_SECRET_KEY", raising=False)
        for name, value in billing_env(stripe_url or "http://stripe.invalid").items():
            if stripe_url or name == "ORQEN_PLANS":  # local mode: the plans, no Stripe
                monkeypatch.setenv(name, value)
        billing_settings = BillingSettings()  # type: ignore[call-arg]
        accounting = AccountingServicer(
            repo, RoutingStats(accounting_pool), UsageStats(accounting_pool), redis, AuthCacheKeys(TOKEN)
        )
        billing = BillingServicer(billing_pool, billing_settings, *stripe_parts(billing_settings, billing_pool, stack))
        addrs = {}
        for name, register in (
            ("accounting", lambda server: accounting_pb2_grpc.add_AccountingServicer_to_server(accounting, server)),
            ("billing", lambda server: billing_pb2_grpc.add_BillingServicer_to_server(billing, server)),
        ):
            server = grpc.aio.server(interceptors=[ServerInterceptor(name, TOKEN, verify)])
            register(server)
            port = server.add_insecure_port("127.0.0.1:0")
            await server.start()
            stack.push_async_callback(server.stop, None)
            addrs[f"{name}_addr"] = f"127.0.0.1:{port}"
        settings = EdgeSettings(  # type: ignore[call-arg]
            internal_token=TOKEN,
            nats_url=orqen_nats_url,
            nats_prefix=orqen_nats_prefix,
            grace_seconds=1,
            **addrs,
            **{"redis_url": orqen_redis_db_url, **edge_settings},
        )
        runtime = await Runtime.open(settings, stack)
        transport = httpx.ASGITransport(app=RequestContextMiddleware(create_app(runtime)))
        # https: the session cookie is Secure, so a client only sends it back over HTTPS.
        client = await stack.enter_async_context(httpx.AsyncClient(transport=transport, base_url="https://edge"))
        return Edge(client, account["id"], key.plaintext, billing_pool, accounting_pool)

    yield start
    await stack.aclose()
