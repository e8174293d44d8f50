"""The billing schema's record of each account's Stripe customer, subscription and invoices.

Stripe objects arrive as plain JSON dicts (webhook payloads, or SDK objects turned into
dicts), so one parser serves both paths. Every write that comes from Stripe carries the
Stripe time it describes (`as_of`, epoch seconds): a snapshot older than the one stored
is ignored, because Stripe delivers webhooks in no particular order.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

import asyncpg

from orqen_billing.settings import FREE_TIER, BillingSettings

# Statuses in which the subscribed tier applies. past_due keeps it while Stripe retries the payment.
ENTITLED_STATUSES = frozenset({"active", "trialing", "past_due"})

# A connection (inside a transaction) or the pool: both run the same queries.
Executor: TypeAlias = "asyncpg.Connection | asyncpg.Pool"


@dataclass(frozen=True, slots=True)
class SubscriptionSnapshot:
    """What Orqen keeps of a Stripe Subscription object."""

    subscription_id: str
    customer_id: str
    status: str
    price_id: str
    cancel_at_period_end: bool
    # From the subscription's metadata (Checkout sets it); "" when absent or not a UUID.
    account_id: str

    @classmethod
    def from_stripe(cls, obj: Mapping[str, Any]) -> SubscriptionSnapshot:
        return cls(
            subscription_id=str(obj["id"]),
            customer_id=stripe_id(obj.get("customer")),
            status=str(obj.get("status") or ""),
            price_id=_first_price(obj),
            cancel_at_period_end=bool(obj.get("cancel_at_period_end")),
            account_id=account_in_metadata(obj),
        )

    def tier(self, settings: BillingSettings) -> str:
        """The tier this subscription entitles the account to."""
        if self.status not in ENTITLED_STATUSES:
            return FREE_TIER
        return settings.tier_of_price(self.price_id) or FREE_TIER


def stripe_id(value: Any) -> str:
    """The id of a Stripe reference, whether Stripe sent the id or the expanded object."""
    if isinstance(value, Mapping):
        return str(value.get("id") or "")
    return str(value or "")


def account_in_metadata(obj: Mapping[str, Any]) -> str:
    """The Orqen account id Orqen put in a Stripe object's metadata, or ""."""
    value = (obj.get("metadata") or {}).get("account_id", "")
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return ""


def _first_price(subscription: Mapping[str, Any]) -> str:
    """The Price of the subscription's (single) item; legacy Plans are Prices to Stripe too."""
    items = (subscription.get("items") or {}).get("data") or []
    if not items:
        return ""
    item = items[0]
    return stripe_id(item.get("price")) or stripe_id(item.get("plan"))


class SubscriptionStore:
    """SQL of the subscriptions, stripe_events and invoices tables.

    Methods that take `db` run on the caller's connection, so a webhook's event id and its
    effects commit together.
    """

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def customer_of(self, account_id: str) -> str | None:
        value = await self.pool.fetchval(
            "SELECT stripe_customer_id FROM subscriptions WHERE account_id = $1::uuid", account_id
        )
        return str(value) if value else None

    async def attach_customer(self, account_id: str, customer_id: str) -> str:
        """Record the account's Stripe customer unless it has one already; returns the one in force."""
        value = await self.pool.fetchval(
            """
            INSERT INTO subscriptions (account_id, stripe_customer_id) VALUES ($1::uuid, $2)
            ON CONFLICT (account_id) DO UPDATE
                SET stripe_customer_id = coalesce(subscriptions.stripe_customer_id, EXCLUDED.stripe_customer_id)
            RETURNING stripe_customer_id
            """,
            account_id,
            customer_id,
        )
        return str(value)

    async def account_of_customer(self, db: Executor, customer_id: str) -> str | None:
        if not customer_id:
            return None
        value = await db.fetchval(
            "SELECT account_id::text FROM subscriptions WHERE stripe_customer_id = $1", customer_id
        )
        return str(value) if value else None

    async def apply(self, db: Executor, account_id: str, snapshot: SubscriptionSnapshot, tier: str, as_of: int) -> bool:
        """Store the snapshot as the account's subscription unless a newer one is stored; True if stored."""
        status = await db.execute(
            """
            INSERT INTO subscriptions AS s (account_id, tier, stripe_customer_id, stripe_subscription_id, status,
                                            price_id, cancel_at_period_end, stripe_as_of, updated_at)
            VALUES ($1::uuid, $2, nullif($3, ''), $4, $5, $6, $7, $8, now())
            ON CONFLICT (account_id) DO UPDATE SET
                tier = EXCLUDED.tier,
                stripe_customer_id = coalesce(s.stripe_customer_id, EXCLUDED.stripe_customer_id),
                stripe_subscription_id = EXCLUDED.stripe_subscription_id,
                status = EXCLUDED.status,
                price_id = EXCLUDED.price_id,
                cancel_at_period_end = EXCLUDED.cancel_at_period_end,
                stripe_as_of = EXCLUDED.stripe_as_of,
                updated_at = now()
            WHERE s.stripe_as_of <= EXCLUDED.stripe_as_of
            """,
            account_id,
            tier,
            snapshot.customer_id,
            snapshot.subscription_id,
            snapshot.status,
            snapshot.price_id,
            snapshot.cancel_at_period_end,
            as_of,
        )
        return bool(status.endswith(" 1"))

    async def downgrade(self, db: Executor, account_id: str, as_of: int) -> None:
        """The account has no subscription left in Stripe: back to the free tier."""
        await db.execute(
            """
            UPDATE subscriptions SET tier = $2, stripe_subscription_id = NULL, status = '', price_id = '',
                cancel_at_period_end = false, stripe_as_of = $3, updated_at = now()
            WHERE account_id = $1::uuid AND stripe_as_of <= $3
            """,
            account_id,
            FREE_TIER,
            as_of,
        )

    async def set_status(
        self, db: Executor, account_id: str, subscription_id: str, status: str, tier: str, as_of: int
    ) -> bool:
        """Change the status (and so the tier) of the account's current subscription; True if changed."""
        result = await db.execute(
            """
            UPDATE subscriptions SET status = $3, tier = $4, stripe_as_of = $5, updated_at = now()
            WHERE account_id = $1::uuid AND stripe_subscription_id = $2 AND stripe_as_of <= $5
            """,
            account_id,
            subscription_id,
            status,
            tier,
            as_of,
        )
        return bool(result.endswith(" 1"))

    async def current(self, db: Executor, account_id: str) -> asyncpg.Record | None:
        return await db.fetchrow(
            "SELECT tier, status, price_id, stripe_subscription_id FROM subscriptions WHERE account_id = $1::uuid",
            account_id,
        )

    async def first_delivery(self, db: Executor, event_id: str, event_type: str, created: int) -> bool:
        """Record a webhook event id; False when it was recorded before (a redelivery)."""
        status = await db.execute(
            "INSERT INTO stripe_events (event_id, type, created) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            event_id,
            event_type,
            created,
        )
        return bool(status.endswith(" 1"))

    async def tag_event(self, db: Executor, event_id: str, account_id: str) -> None:
        await db.execute("UPDATE stripe_events SET account_id = $2::uuid WHERE event_id = $1", event_id, account_id)

    async def record_invoice(self, db: Executor, account_id: str, invoice: Mapping[str, Any]) -> None:
        await db.execute(
            """
            INSERT INTO invoices (invoice_id, account_id, stripe_subscription_id, status, amount_due, amount_paid,
                                  currency)
            VALUES ($1, $2::uuid, nullif($3, ''), $4, $5, $6, $7)
            ON CONFLICT (invoice_id) DO UPDATE SET status = EXCLUDED.status, amount_due = EXCLUDED.amount_due,
                amount_paid = EXCLUDED.amount_paid, updated_at = now()
            """,
            str(invoice["id"]),
            account_id,
            invoice_subscription(invoice),
            str(invoice.get("status") or ""),
            int(invoice.get("amount_due") or 0),
            int(invoice.get("amount_paid") or 0),
            str(invoice.get("currency") or ""),
        )


def invoice_subscription(invoice: Mapping[str, Any]) -> str:
    """The subscription an invoice bills: top-level before Stripe API 2025-03, under `parent` since."""
    parent = (invoice.get("parent") or {}).get("subscription_details") or {}
    return stripe_id(invoice.get("subscription")) or stripe_id(parent.get("subscription"))
