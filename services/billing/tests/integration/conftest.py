"""A real billing gRPC server on the test's database, in local mode or against the Stripe fake."""

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager

import asyncpg
import grpc
import pytest

from fakes.stripe_api import StripeFake
from harness import billing_env
from orqen.v1 import billing_pb2_grpc
from orqen_billing.__main__ import MIGRATIONS, SCHEMA, stripe_parts
from orqen_billing.servicer import BillingServicer
from orqen_billing.settings import BillingSettings
from orqen_common.context import Principal
from orqen_common.db import create_pool
from orqen_common.grpc_client import open_channel
from orqen_common.grpc_server import ServerInterceptor
from orqen_common.migrations import upgrade_to_head

INTERNAL_TOKEN = "internal"
ACCOUNT = "5f0a4b3e-8e6e-4c1e-9a51-2f3f7d7a9c10"
OTHER_ACCOUNT = "0c6e1f0e-3f52-4a5e-8d0b-6a1b2c3d4e5f"
# An API key of ACCOUNT, as accounting would verify it.
ACCOUNT_KEY = "sk-orq-billing-test-key"

Connect = Callable[..., AbstractAsyncContextManager[billing_pb2_grpc.BillingStub]]


@pytest.fixture(scope="session")
def stripe_fake() -> Iterator[StripeFake]:
    with StripeFake() as fake:
        yield fake


@pytest.fixture
async def pool(orqen_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    upgrade_to_head(orqen_database_url, SCHEMA, MIGRATIONS)
    pool = await create_pool(orqen_database_url, 4, SCHEMA)
    yield pool
    await pool.close()


def billing_settings(monkeypatch: pytest.MonkeyPatch, stripe_url: str | None) -> BillingSettings:
    """Settings as the service reads them from its environment; Stripe only with `stripe_url`."""
    monkeypatch.setenv("ORQEN_INTERNAL_TOKEN", INTERNAL_TOKEN)
    monkeypatch.setenv("ORQEN_DASHBOARD_URL", "https://orqen.test/dashboard")
    env = billing_env(stripe_url or "http://stripe.invalid")
    if stripe_url is None:
        env = {"ORQEN_PLANS": env["ORQEN_PLANS"]}  # local mode: the plans, no Stripe
    for name in ("STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "ORQEN_STRIPE_API_BASE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return BillingSettings()  # type: ignore[call-arg]


async def _verify(key: str) -> Principal | None:
    return Principal(kind="api_key", account_id=ACCOUNT, api_key_id="k1") if key == ACCOUNT_KEY else None


@pytest.fixture
async def serve_billing(pool: asyncpg.Pool) -> AsyncIterator[Callable[[BillingSettings], Awaitable[Connect]]]:
    """serve_billing(settings): a billing server (auth interceptor included); returns `connect(token=None)`."""
    stack = AsyncExitStack()

    async def serve(settings: BillingSettings) -> Connect:
        server = grpc.aio.server(interceptors=[ServerInterceptor("billing", INTERNAL_TOKEN, _verify)])
        billing_pb2_grpc.add_BillingServicer_to_server(
            BillingServicer(pool, settings, *stripe_parts(settings, pool, stack)), server
        )
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        stack.push_async_callback(server.stop, None)

        @asynccontextmanager
        async def connect(token: str | None = None) -> AsyncIterator[billing_pb2_grpc.BillingStub]:
            async with open_channel(f"127.0.0.1:{port}", token or INTERNAL_TOKEN) as channel:
                yield billing_pb2_grpc.BillingStub(channel)

        return connect

    yield serve
    await stack.aclose()
