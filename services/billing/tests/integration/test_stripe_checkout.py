"""Checkout, the customer portal and the syncs through the real stripe SDK against the Stripe fake.

The fake is localstripe plus Checkout/portal sessions (tests-e2e/fakes/stripe_api.py).
"""

from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import grpc
import pytest

from fakes.stripe_api import PRO_PRICE_ID, StripeFake
from orqen.v1 import billing_pb2
from orqen_billing.settings import BillingSettings

from .conftest import ACCOUNT, ACCOUNT_KEY, OTHER_ACCOUNT, Connect, billing_settings

Refused = Callable[[Awaitable[Any], grpc.StatusCode], Awaitable[str]]
Serve = Callable[[BillingSettings], Awaitable[Connect]]


async def _row(pool: asyncpg.Pool, account_id: str = ACCOUNT) -> dict[str, Any]:
    row = await pool.fetchrow(
        "SELECT tier, status, price_id, stripe_customer_id, stripe_subscription_id FROM subscriptions "
        "WHERE account_id = $1::uuid",
        account_id,
    )
    return dict(row) if row else {}


async def test_checkout_then_sync_upgrades_to_pro_and_the_portal_opens(
    serve_billing: Serve,
    stripe_fake: StripeFake,
    pool: asyncpg.Pool,
    monkeypatch: pytest.MonkeyPatch,
    orqen_refused: Refused,
) -> None:
    connect = await serve_billing(billing_settings(monkeypatch, stripe_fake.url))
    async with connect() as stub:
        before = await stub.GetBilling(billing_pb2.GetBillingRequest(account_id=ACCOUNT))
        assert (before.tier, before.stripe_enabled, before.base_cents) == ("free", True, 0)

        checkout = await stub.CreateCheckout(billing_pb2.CreateCheckoutRequest(account_id=ACCOUNT, email="a@x.io"))
        assert checkout.id.startswith("cs_") and checkout.url.startswith(stripe_fake.url)
        row = await _row(pool)
        assert row["tier"] == "free" and row["stripe_customer_id"].startswith("cus_")

        # The browser comes back before paying: nothing to sync yet.
        await orqen_refused(
            stub.SyncCheckout(billing_pb2.SyncCheckoutRequest(account_id=ACCOUNT, session_id=checkout.id)),
            grpc.StatusCode.FAILED_PRECONDITION,
        )
        stripe_fake.complete_checkout(checkout.id)
        # Another account cannot claim the session.
        await orqen_refused(
            stub.SyncCheckout(billing_pb2.SyncCheckoutRequest(account_id=OTHER_ACCOUNT, session_id=checkout.id)),
            grpc.StatusCode.NOT_FOUND,
        )
        assert await _row(pool, OTHER_ACCOUNT) == {}

        status = await stub.SyncCheckout(billing_pb2.SyncCheckoutRequest(account_id=ACCOUNT, session_id=checkout.id))
        assert (status.tier, status.subscription_status, status.base_cents) == ("pro", "active", 4900)
        row = await _row(pool)
        assert (row["tier"], row["status"], row["price_id"]) == ("pro", "active", PRO_PRICE_ID)
        assert row["stripe_subscription_id"].startswith("sub_")

        again = await orqen_refused(
            stub.CreateCheckout(billing_pb2.CreateCheckoutRequest(account_id=ACCOUNT)),
            grpc.StatusCode.FAILED_PRECONDITION,
        )
        assert "customer portal" in again

        portal = await stub.CreatePortal(billing_pb2.CreatePortalRequest(account_id=ACCOUNT))
        assert portal.id.startswith("bps_") and portal.url.startswith(stripe_fake.url)

        # Cancelled in Stripe (e.g. in the portal): sync-subscription brings the account back to free.
        stripe_fake.delete(f"/v1/subscriptions/{row['stripe_subscription_id']}")
        synced = await stub.SyncSubscription(billing_pb2.GetBillingRequest(account_id=ACCOUNT))
        assert (synced.tier, synced.subscription_status) == ("free", "canceled")
        assert (await _row(pool))["tier"] == "free"


async def test_portal_and_sync_without_a_stripe_customer(
    serve_billing: Serve,
    stripe_fake: StripeFake,
    pool: asyncpg.Pool,
    monkeypatch: pytest.MonkeyPatch,
    orqen_refused: Refused,
) -> None:
    connect = await serve_billing(billing_settings(monkeypatch, stripe_fake.url))
    async with connect() as stub:
        detail = await orqen_refused(
            stub.CreatePortal(billing_pb2.CreatePortalRequest(account_id=ACCOUNT)), grpc.StatusCode.FAILED_PRECONDITION
        )
        assert "Checkout first" in detail
        synced = await stub.SyncSubscription(billing_pb2.GetBillingRequest(account_id=ACCOUNT))
        assert synced.tier == "free"
        await orqen_refused(
            stub.SyncCheckout(billing_pb2.SyncCheckoutRequest(account_id=ACCOUNT, session_id="cs_test_unknown")),
            grpc.StatusCode.NOT_FOUND,
        )
        await orqen_refused(
            stub.SyncCheckout(billing_pb2.SyncCheckoutRequest(account_id=ACCOUNT, session_id="sub_not_a_session")),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
    assert await pool.fetchval("SELECT count(*) FROM subscriptions") == 0


async def test_stripe_calls_are_refused_to_api_keys(
    serve_billing: Serve, stripe_fake: StripeFake, monkeypatch: pytest.MonkeyPatch, orqen_refused: Refused
) -> None:
    connect = await serve_billing(billing_settings(monkeypatch, stripe_fake.url))
    async with connect(ACCOUNT_KEY) as stub:
        assert (await stub.GetBilling(billing_pb2.GetBillingRequest())).tier == "free"
        for call in (
            stub.CreateCheckout(billing_pb2.CreateCheckoutRequest(account_id=ACCOUNT)),
            stub.CreatePortal(billing_pb2.CreatePortalRequest(account_id=ACCOUNT)),
            stub.SyncSubscription(billing_pb2.GetBillingRequest(account_id=ACCOUNT)),
            stub.HandleWebhook(billing_pb2.WebhookDelivery(payload=b"{}", signature="")),
        ):
            await orqen_refused(call, grpc.StatusCode.PERMISSION_DENIED)


async def test_stripe_unreachable_is_a_503_kind_of_error(
    serve_billing: Serve, monkeypatch: pytest.MonkeyPatch, pool: asyncpg.Pool, orqen_refused: Refused
) -> None:
    connect = await serve_billing(billing_settings(monkeypatch, "http://127.0.0.1:9"))
    async with connect() as stub:
        detail = await orqen_refused(
            stub.CreateCheckout(billing_pb2.CreateCheckoutRequest(account_id=ACCOUNT)), grpc.StatusCode.UNAVAILABLE
        )
    assert "Stripe is unavailable" in detail and "sk_test" not in detail
    assert await pool.fetchval("SELECT count(*) FROM subscriptions") == 0


async def test_local_mode_answers_unimplemented_and_still_projects(
    serve_billing: Serve, monkeypatch: pytest.MonkeyPatch, orqen_refused: Refused
) -> None:
    connect = await serve_billing(billing_settings(monkeypatch, None))
    async with connect() as stub:
        status = await stub.GetBilling(billing_pb2.GetBillingRequest(account_id=ACCOUNT))
        assert (status.tier, status.stripe_enabled, status.included_tokens) == ("free", False, 1_000_000)
        for call in (
            stub.CreateCheckout(billing_pb2.CreateCheckoutRequest(account_id=ACCOUNT)),
            stub.CreatePortal(billing_pb2.CreatePortalRequest(account_id=ACCOUNT)),
            stub.SyncCheckout(billing_pb2.SyncCheckoutRequest(account_id=ACCOUNT, session_id="cs_x")),
            stub.SyncSubscription(billing_pb2.GetBillingRequest(account_id=ACCOUNT)),
            stub.HandleWebhook(billing_pb2.WebhookDelivery(payload=b"{}", signature="t=1,v1=x")),
        ):
            assert "STRIPE_SECRET_KEY" in await orqen_refused(call, grpc.StatusCode.UNIMPLEMENTED)
