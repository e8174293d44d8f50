"""Stripe webhooks signed with the stripe SDK's own signature helper; state checked in Postgres after each."""

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import grpc
import pytest
import stripe

from fakes.stripe_api import PRO_PRICE_ID, StripeFake
from harness import STRIPE_WEBHOOK_SECRET as WEBHOOK_SECRET
from orqen.v1 import billing_pb2, billing_pb2_grpc
from orqen_billing.settings import BillingSettings

from .conftest import ACCOUNT, Connect, billing_settings

Refused = Callable[[Awaitable[Any], grpc.StatusCode], Awaitable[str]]
Serve = Callable[[BillingSettings], Awaitable[Connect]]
CUSTOMER = "cus_orqentest"
SUBSCRIPTION = "sub_orqentest"


def _event(event_id: str, event_type: str, obj: dict[str, Any], created: int) -> bytes:
    return json.dumps(
        {"id": event_id, "object": "event", "type": event_type, "created": created, "data": {"object": obj}}
    ).encode()


def _subscription(status: str, *, metadata: bool = True) -> dict[str, Any]:
    return {
        "id": SUBSCRIPTION,
        "object": "subscription",
        "customer": CUSTOMER,
        "status": status,
        "cancel_at_period_end": False,
        "metadata": {"account_id": ACCOUNT} if metadata else {},
        "items": {"object": "list", "data": [{"id": "si_1", "price": {"id": PRO_PRICE_ID, "object": "price"}}]},
    }


def _invoice(invoice_id: str, status: str, paid: int) -> dict[str, Any]:
    # Stripe API 2025-03 and later: the subscription is under parent.subscription_details.
    return {
        "id": invoice_id,
        "object": "invoice",
        "customer": CUSTOMER,
        "status": status,
        "amount_due": 4900,
        "amount_paid": paid,
        "currency": "usd",
        "parent": {"type": "subscription_details", "subscription_details": {"subscription": SUBSCRIPTION}},
    }


def _signed(payload: bytes, secret: str = WEBHOOK_SECRET, at: int | None = None) -> str:
    return stripe.WebhookSignature.generate_signature_header(payload.decode(), secret, at)


async def _deliver(stub: billing_pb2_grpc.BillingStub, payload: bytes, signature: str) -> billing_pb2.WebhookOutcome:
    return await stub.HandleWebhook(billing_pb2.WebhookDelivery(payload=payload, signature=signature))


async def _state(pool: asyncpg.Pool) -> tuple[Any, ...]:
    row = await pool.fetchrow("SELECT tier, status FROM subscriptions WHERE account_id = $1::uuid", ACCOUNT)
    events = await pool.fetchval("SELECT count(*) FROM stripe_events")
    return (row["tier"], row["status"], events) if row else (None, None, events)


async def test_subscription_lifecycle_and_invoices_through_webhooks(
    serve_billing: Serve, stripe_fake: StripeFake, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    connect = await serve_billing(billing_settings(monkeypatch, stripe_fake.url))
    t0 = int(time.time()) - 60
    async with connect() as stub:
        created = _event("evt_1", "customer.subscription.created", _subscription("active"), t0)
        outcome = await _deliver(stub, created, _signed(created))
        assert (outcome.event_id, outcome.applied, outcome.duplicate) == ("evt_1", True, False)
        assert await _state(pool) == ("pro", "active", 1)
        customer = await pool.fetchval("SELECT stripe_customer_id FROM subscriptions")
        assert customer == CUSTOMER

        # Stripe retries a delivery: recognised by its id, nothing changes.
        again = await _deliver(stub, created, _signed(created))
        assert (again.duplicate, again.applied) == (True, False)
        assert await _state(pool) == ("pro", "active", 1)

        failed = _event("evt_2", "invoice.payment_failed", _invoice("in_1", "open", 0), t0 + 10)
        assert (await _deliver(stub, failed, _signed(failed))).applied
        assert await _state(pool) == ("pro", "past_due", 2)  # still Pro while Stripe retries the card
        assert await pool.fetchval("SELECT status FROM invoices WHERE invoice_id = 'in_1'") == "open"

        paid = _event("evt_3", "invoice.paid", _invoice("in_1", "paid", 4900), t0 + 20)
        assert (await _deliver(stub, paid, _signed(paid))).applied
        assert await _state(pool) == ("pro", "active", 3)
        invoice = await pool.fetchrow("SELECT status, amount_paid, stripe_subscription_id FROM invoices")
        assert tuple(invoice) == ("paid", 4900, SUBSCRIPTION)

        # An older snapshot delivered late does not overwrite the newer state.
        stale = _event("evt_4", "customer.subscription.updated", _subscription("incomplete"), t0 + 5)
        assert not (await _deliver(stub, stale, _signed(stale))).applied
        assert await _state(pool) == ("pro", "active", 4)

        # Found by its customer even without Orqen's metadata.
        deleted = _event("evt_5", "customer.subscription.deleted", _subscription("canceled", metadata=False), t0 + 30)
        assert (await _deliver(stub, deleted, _signed(deleted))).applied
        assert await _state(pool) == ("free", "canceled", 5)
        status = await stub.GetBilling(billing_pb2.GetBillingRequest(account_id=ACCOUNT))
        assert (status.tier, status.subscription_status) == ("free", "canceled")

        other = _event("evt_6", "customer.created", {"id": "cus_other", "object": "customer"}, t0 + 40)
        outcome = await _deliver(stub, other, _signed(other))
        assert (outcome.type, outcome.applied) == ("customer.created", False)
    tagged = await pool.fetchval("SELECT count(*) FROM stripe_events WHERE account_id = $1::uuid", ACCOUNT)
    assert tagged == 5


async def test_bad_or_stale_signatures_change_nothing(
    serve_billing: Serve,
    stripe_fake: StripeFake,
    pool: asyncpg.Pool,
    monkeypatch: pytest.MonkeyPatch,
    orqen_refused: Refused,
) -> None:
    connect = await serve_billing(billing_settings(monkeypatch, stripe_fake.url))
    payload = _event("evt_bad", "customer.subscription.created", _subscription("active"), int(time.time()))
    tampered = payload.replace(b'"active"', b'"trialing"')
    async with connect() as stub:
        for body, signature in (
            (payload, _signed(payload, secret="whsec_someone_else")),
            (payload, _signed(payload, at=int(time.time()) - 3600)),  # replayed an hour later
            (tampered, _signed(payload)),
            (payload, ""),
            (payload, "garbage"),
        ):
            detail = await orqen_refused(_deliver(stub, body, signature), grpc.StatusCode.INVALID_ARGUMENT)
            assert "signature" in detail
        not_an_event = b'{"hello": "world"}'
        await orqen_refused(_deliver(stub, not_an_event, _signed(not_an_event)), grpc.StatusCode.INVALID_ARGUMENT)
    assert await _state(pool) == (None, None, 0)
