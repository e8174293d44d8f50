"""`python -m orqen_accounting`: run the accounting service."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from functools import partial
from pathlib import Path

import grpc

from orqen.v1 import accounting_pb2, accounting_pb2_grpc
from orqen_accounting.ingest import RequestIngest
from orqen_accounting.ledger import Ledger
from orqen_accounting.owners import EmailTakenError, OwnerRepository
from orqen_accounting.repository import AccountingRepository
from orqen_accounting.retention import Retention
from orqen_accounting.routing_stats import RoutingStats
from orqen_accounting.servicer import AccountingServicer, verify_api_key_locally
from orqen_accounting.settings import AccountingSettings
from orqen_accounting.tool_learning import ToolLearningStore
from orqen_accounting.usage import UsageStats
from orqen_common import aio
from orqen_common.cache import AuthCacheKeys, open_redis
from orqen_common.context import Principal
from orqen_common.db import create_pool, unavailable
from orqen_common.events import REQUEST_COMPLETED, DurableConsumer, EventNames
from orqen_common.grpc_server import ServiceParts, run_grpc_service
from orqen_common.migrations import upgrade_to_head
from orqen_common.prices import Prices
from orqen_common.settings import load_settings

SCHEMA = "accounting"
MIGRATIONS = Path(__file__).parent / "migrations"


async def bootstrap_key(repo: AccountingRepository, owners: OwnerRepository, settings: AccountingSettings) -> None:
    """Create the configured bootstrap account, its key and its first dashboard owner; safe to repeat
    on every start (an owner who exists already keeps the password it has now)."""
    email, password = settings.bootstrap_owner_email, settings.bootstrap_owner_password
    if settings.bootstrap_api_key is None and (email is None or password is None):
        return
    account = await repo.ensure_account(settings.bootstrap_account)
    if settings.bootstrap_api_key is not None:
        await repo.create_key(account["id"], "bootstrap", settings.bootstrap_api_key.get_secret_value())
    if email is not None and password is not None:
        with contextlib.suppress(EmailTakenError):
            await owners.create(account["id"], email, password.get_secret_value())


async def build(settings: AccountingSettings, stack: AsyncExitStack) -> ServiceParts:
    """Migrate, open the pool and the auth cache, bootstrap the key, and wire the servicer and the consumer."""
    prices = Prices.from_settings(settings)
    await asyncio.to_thread(upgrade_to_head, settings.database_url, SCHEMA, MIGRATIONS)
    pool = await create_pool(settings.database_url, settings.database_pool_size, SCHEMA)
    stack.push_async_callback(pool.close)
    repo = AccountingRepository(pool)
    redis = open_redis(stack, settings.redis_url)
    await bootstrap_key(repo, OwnerRepository(pool), settings)
    consumer = DurableConsumer(
        settings.nats_url,
        EventNames(settings.nats_prefix),
        "accounting",
        REQUEST_COMPLETED,
        RequestIngest(Ledger(pool), prices, ToolLearningStore(redis) if settings.tool_learning else None),
        batch=settings.ingest_batch,
        ack_wait=settings.ingest_ack_wait_seconds,
        max_deliveries=settings.event_max_deliveries,
        unavailable=unavailable,
    )

    background: list[Callable[[asyncio.Event], Awaitable[None]]] = [consumer.run]
    if settings.request_retention_days:
        background.append(Retention(pool, settings.request_retention_days).run)

    async def verify(plaintext: str) -> Principal | None:
        return await verify_api_key_locally(repo, plaintext)

    def register(server: grpc.aio.Server) -> None:
        accounting_pb2_grpc.add_AccountingServicer_to_server(
            AccountingServicer(
                repo,
                RoutingStats(pool),
                UsageStats(pool),
                redis,
                AuthCacheKeys(settings.internal_token.get_secret_value()),
            ),
            server,
        )

    return ServiceParts(
        register=register,
        service_names=[accounting_pb2.DESCRIPTOR.services_by_name["Accounting"].full_name],
        verify_api_key=verify,
        background=background,
        unavailable=unavailable,
    )


def main(argv: list[str] | None = None) -> int:
    settings = load_settings(AccountingSettings)
    aio.run(run_grpc_service("accounting", settings, settings.accounting_addr, partial(build, settings)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
