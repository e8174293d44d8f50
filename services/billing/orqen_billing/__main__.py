"""`python -m orqen_billing`: run the billing service."""

from __future__ import annotations

import asyncio
import sys
from contextlib import AsyncExitStack
from functools import partial
from pathlib import Path

import asyncpg
import grpc
import structlog

from orqen.v1 import billing_pb2, billing_pb2_grpc
from orqen_billing.metering import UsageMeter
from orqen_billing.servicer import BillingServicer
from orqen_billing.settings import BillingSettings
from orqen_billing.stripe_billing import StripeBilling
from orqen_billing.stripe_gateway import StripeGateway
from orqen_billing.subscriptions import SubscriptionStore
from orqen_billing.webhooks import WebhookHandler
from orqen_common import aio
from orqen_common.auth import open_key_verifier
from orqen_common.cache import open_redis
from orqen_common.db import create_pool, unavailable
from orqen_common.events import REQUEST_COMPLETED, DurableConsumer, EventNames
from orqen_common.grpc_server import ServiceParts, run_grpc_service
from orqen_common.migrations import upgrade_to_head
from orqen_common.settings import load_settings

SCHEMA = "billing"
log = structlog.get_logger(__name__)
MIGRATIONS = Path(__file__).parent / "migrations"


async def build(settings: BillingSettings, stack: AsyncExitStack) -> ServiceParts:
    """Migrate, open the pool, and wire the servicer and the metering consumer."""
    await asyncio.to_thread(upgrade_to_head, settings.database_url, SCHEMA, MIGRATIONS)
    pool = await create_pool(settings.database_url, settings.database_pool_size, SCHEMA)
    stack.push_async_callback(pool.close)
    consumer = DurableConsumer(
        settings.nats_url,
        EventNames(settings.nats_prefix),
        "billing",
        REQUEST_COMPLETED,
        UsageMeter(pool),
        max_deliveries=settings.event_max_deliveries,
        unavailable=unavailable,
    )

    servicer = BillingServicer(pool, settings, *stripe_parts(settings, pool, stack))

    def register(server: grpc.aio.Server) -> None:
        billing_pb2_grpc.add_BillingServicer_to_server(servicer, server)

    return ServiceParts(
        register=register,
        service_names=[billing_pb2.DESCRIPTOR.services_by_name["Billing"].full_name],
        verify_api_key=open_key_verifier(stack, open_redis(stack, settings.redis_url), settings),
        background=[consumer.run],
        unavailable=unavailable,
    )


def stripe_parts(
    settings: BillingSettings, pool: asyncpg.Pool, stack: AsyncExitStack
) -> tuple[StripeBilling | None, WebhookHandler | None]:
    """Checkout/portal/sync and the webhook handler; None where the Stripe secrets are not configured.

    The Stripe HTTP client closes with `stack`.
    """
    if not settings.stripe_enabled:
        log.info("billing in local mode: no STRIPE_SECRET_KEY, the Stripe endpoints answer 501")
        return None, None
    store = SubscriptionStore(pool)
    webhooks = WebhookHandler(settings, store) if settings.webhooks_enabled else None
    if webhooks is None:
        log.warning("STRIPE_WEBHOOK_SECRET is not set: Stripe webhooks answer 501")
    log.info("billing with Stripe", api_base=settings.stripe_api_base)
    gateway = StripeGateway(settings)
    stack.push_async_callback(gateway.close)
    return StripeBilling(settings, store, gateway), webhooks


def main(argv: list[str] | None = None) -> int:
    settings = load_settings(BillingSettings)
    aio.run(run_grpc_service("billing", settings, settings.billing_addr, partial(build, settings)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
