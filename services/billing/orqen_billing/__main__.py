"""`python -m orqen_billing`: run the billing service."""

from __future__ import annotations

import asyncio
import sys
from contextlib import AsyncExitStack
from functools import partial
from pathlib import Path

import grpc

from orqen.v1 import billing_pb2, billing_pb2_grpc
from orqen_billing.metering import UsageMeter
from orqen_billing.servicer import BillingServicer
from orqen_billing.settings import BillingSettings
from orqen_common.auth import open_key_verifier
from orqen_common.cache import open_redis
from orqen_common.db import create_pool
from orqen_common.events import REQUEST_COMPLETED, DurableConsumer, EventNames
from orqen_common.grpc_server import ServiceParts, run_grpc_service
from orqen_common.migrations import upgrade_to_head

SCHEMA = "billing"
MIGRATIONS = Path(__file__).parent / "migrations"


async def build(settings: BillingSettings, stack: AsyncExitStack) -> ServiceParts:
    """Migrate, open the pool, and wire the servicer and the metering consumer."""
    await asyncio.to_thread(upgrade_to_head, settings.database_url, SCHEMA, MIGRATIONS)
    pool = await create_pool(settings.database_url, settings.database_pool_size, SCHEMA)
    stack.push_async_callback(pool.close)
    consumer = DurableConsumer(
        settings.nats_url, EventNames(settings.nats_prefix), "billing", REQUEST_COMPLETED, UsageMeter(pool)
    )

    def register(server: grpc.aio.Server) -> None:
        billing_pb2_grpc.add_BillingServicer_to_server(BillingServicer(pool, settings), server)

    return ServiceParts(
        register=register,
        service_names=[billing_pb2.DESCRIPTOR.services_by_name["Billing"].full_name],
        verify_api_key=open_key_verifier(
            stack,
            open_redis(stack, settings.redis_url),
            settings.accounting_addr,
            settings.internal_token.get_secret_value(),
            settings.auth_cache_ttl_seconds,
        ),
        background=[consumer.run],
    )


def main(argv: list[str] | None = None) -> int:
    settings = BillingSettings()
    asyncio.run(run_grpc_service("billing", settings, settings.billing_addr, partial(build, settings)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
