"""Stripe webhooks: signature checked with the SDK, each event applied once, with its id.

A delivery is verified before anything is read from it; a bad or stale signature is an
INVALID_ARGUMENT (HTTP 400) and records nothing. The event id and the event's effects
commit in one transaction, so a redelivery is recognised and changes nothing, and a
failure leaves no trace for Stripe's retry to trip over.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg
import grpc
import orjson
import stripe
import structlog

from orqen_billing.settings import BillingSettings
from orqen_billing.subscriptions import SubscriptionSnapshot, SubscriptionStore, invoice_subscription, stripe_id
from orqen_common.errors import OrqenError

log = structlog.get_logger(__name__)

SUBSCRIPTION_EVENTS = frozenset(
    {"customer.subscription.created", "customer.subscription.updated", "customer.subscription.deleted"}
)
# invoice.payment_succeeded is the older name of invoice.paid; Stripe still sends both.
INVOICE_EVENTS = frozenset({"invoice.paid", "invoice.payment_succeeded", "invoice.payment_failed"})


@dataclass(frozen=True, slots=True)
class WebhookOutcome:
    event_id: str
    type: str
    duplicate: bool
    applied: bool


class WebhookHandler:
    def __init__(self, settings: BillingSettings, store: SubscriptionStore) -> None:
        assert settings.stripe_webhook_secret is not None
        self._secret = settings.stripe_webhook_secret.get_secret_value()
        self._tolerance = settings.stripe_webhook_tolerance_seconds
        self._settings = settings
        self._store = store

    async def handle(self, payload: bytes, signature: str) -> WebhookOutcome:
        event = self._verified(payload, signature)
        event_id, event_type, created = event["id"], event["type"], event["created"]
        obj: Mapping[str, Any] = event["data"]["object"]
        async with self._store.pool.acquire() as conn, conn.transaction():
            if not await self._store.first_delivery(conn, event_id, event_type, created):
                return WebhookOutcome(event_id, event_type, duplicate=True, applied=False)
            applied = await self._apply(conn, event_id, event_type, created, obj)
        log.info("stripe event processed", event_id=event_id, event_type=event_type, applied=applied)
        return WebhookOutcome(event_id, event_type, duplicate=False, applied=applied)

    def _verified(self, payload: bytes, signature: str) -> dict[str, Any]:
        try:
            stripe.WebhookSignature.verify_header(payload.decode(), signature, self._secret, self._tolerance)
        except (stripe.SignatureVerificationError, UnicodeDecodeError):
            raise OrqenError.of(
                grpc.StatusCode.INVALID_ARGUMENT, "Invalid or stale Stripe signature: the event was not processed."
            ) from None
        try:
            event = orjson.loads(payload)
            if not (
                isinstance(event["id"], str)
                and isinstance(event["type"], str)
                and isinstance(event["created"], int)
                and isinstance(event["data"]["object"], dict)
            ):
                raise TypeError
        except (orjson.JSONDecodeError, KeyError, TypeError):
            raise OrqenError.of(grpc.StatusCode.INVALID_ARGUMENT, "The payload is not a Stripe event.") from None
        return dict(event)

    async def _apply(
        self, conn: asyncpg.Connection, event_id: str, event_type: str, created: int, obj: Mapping[str, Any]
    ) -> bool:
        if event_type in SUBSCRIPTION_EVENTS:
            snapshot = SubscriptionSnapshot.from_stripe(obj)
            account_id = snapshot.account_id or await self._store.account_of_customer(conn, snapshot.customer_id)
            if account_id is None:
                return _unknown(event_id, event_type)
            await self._store.tag_event(conn, event_id, account_id)
            return await self._store.apply(conn, account_id, snapshot, snapshot.tier(self._settings), created)
        if event_type in INVOICE_EVENTS:
            account_id = await self._store.account_of_customer(conn, stripe_id(obj.get("customer")))
            if account_id is None:
                return _unknown(event_id, event_type)
            await self._store.tag_event(conn, event_id, account_id)
            await self._store.record_invoice(conn, account_id, obj)
            await self._invoice_moves_status(conn, account_id, event_type, created, obj)
            return True
        return False  # acknowledged: Stripe stops resending events we do not act on

    async def _invoice_moves_status(
        self, conn: asyncpg.Connection, account_id: str, event_type: str, created: int, invoice: Mapping[str, Any]
    ) -> None:
        """A failed payment puts the subscription past due; a paid invoice settles a past-due one."""
        current = await self._store.current(conn, account_id)
        subscription_id = invoice_subscription(invoice)
        if current is None or not subscription_id or current["stripe_subscription_id"] != subscription_id:
            return
        if event_type == "invoice.payment_failed":
            status = "past_due"
        elif current["status"] in ("past_due", "unpaid", "incomplete"):
            status = "active"
        else:
            return
        snapshot = SubscriptionSnapshot(subscription_id, "", status, current["price_id"], False, account_id)
        await self._store.set_status(conn, account_id, subscription_id, status, snapshot.tier(self._settings), created)


def _unknown(event_id: str, event_type: str) -> bool:
    log.warning("stripe event for no known account", event_id=event_id, event_type=event_type)
    return False
