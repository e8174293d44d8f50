"""Checkout, the customer portal and the two syncs: Stripe's answers recorded in the billing schema."""

from __future__ import annotations

import time
from typing import Any

import grpc

from orqen_billing.settings import UPGRADE_TIER, BillingSettings
from orqen_billing.stripe_gateway import StripeGateway
from orqen_billing.subscriptions import (
    ENTITLED_STATUSES,
    SubscriptionSnapshot,
    SubscriptionStore,
    account_in_metadata,
    stripe_id,
)
from orqen_common.errors import OrqenError


class StripeBilling:
    def __init__(self, settings: BillingSettings, store: SubscriptionStore, gateway: StripeGateway) -> None:
        self._settings = settings
        self._store = store
        self._stripe = gateway

    async def create_checkout(self, account_id: str, email: str) -> dict[str, Any]:
        """A Checkout session that subscribes the account to the upgrade tier."""
        current = await self._store.current(self._store.pool, account_id)
        if current is not None and current["tier"] == UPGRADE_TIER:
            raise OrqenError.of(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"This account is already on {UPGRADE_TIER}; manage the subscription in the customer portal.",
            )
        customer_id = await self._customer(account_id, email)
        base = self._settings.dashboard_url.rstrip("/")
        return await self._stripe.create_checkout(
            account_id,
            customer_id,
            self._settings.plans[UPGRADE_TIER].stripe_price_id,
            # Stripe replaces {CHECKOUT_SESSION_ID}; the dashboard hands it to sync-checkout.
            f"{base}/billing?checkout_session_id={{CHECKOUT_SESSION_ID}}",
            f"{base}/billing?checkout=canceled",
        )

    async def create_portal(self, account_id: str) -> dict[str, Any]:
        customer_id = await self._store.customer_of(account_id)
        if customer_id is None:
            raise OrqenError.of(
                grpc.StatusCode.FAILED_PRECONDITION,
                "This account has no Stripe customer yet: upgrade through Checkout first.",
            )
        return await self._stripe.create_portal(customer_id, f"{self._settings.dashboard_url.rstrip('/')}/billing")

    async def sync_checkout(self, account_id: str, session_id: str) -> None:
        """Record the subscription a completed Checkout session created for this account."""
        if not session_id.startswith("cs_"):
            raise OrqenError.of(grpc.StatusCode.INVALID_ARGUMENT, "'session_id' must be a Checkout session id (cs_…).")
        session = await self._stripe.checkout_session(session_id)
        owner = str(session.get("client_reference_id") or "") or account_in_metadata(session)
        if owner != account_id:
            # Same answer as an unknown id: a session id says nothing about other accounts.
            raise OrqenError.of(grpc.StatusCode.NOT_FOUND, "No such Checkout session for this account.")
        if session.get("status") != "complete" or not session.get("subscription"):
            raise OrqenError.of(
                grpc.StatusCode.FAILED_PRECONDITION, "This Checkout session is not complete yet: nothing to sync."
            )
        subscription = await self._stripe.subscription(stripe_id(session["subscription"]))
        await self._record(account_id, SubscriptionSnapshot.from_stripe(subscription))

    async def sync_subscription(self, account_id: str) -> None:
        """Refresh the account's subscription from Stripe (its live one, else its newest)."""
        customer_id = await self._store.customer_of(account_id)
        if customer_id is None:
            return  # never went through Checkout: nothing in Stripe to sync
        subscriptions = await self._stripe.subscriptions_of(customer_id)
        if not subscriptions:
            await self._store.downgrade(self._store.pool, account_id, int(time.time()))
            return
        chosen = max(subscriptions, key=lambda s: (s.get("status") in ENTITLED_STATUSES, int(s.get("created") or 0)))
        await self._record(account_id, SubscriptionSnapshot.from_stripe(chosen))

    async def _record(self, account_id: str, snapshot: SubscriptionSnapshot) -> None:
        # Read from Stripe just now, so it is at least as new as any webhook already applied.
        await self._store.apply(self._store.pool, account_id, snapshot, snapshot.tier(self._settings), int(time.time()))

    async def _customer(self, account_id: str, email: str) -> str:
        existing = await self._store.customer_of(account_id)
        if existing is not None:
            return existing
        return await self._store.attach_customer(account_id, await self._stripe.create_customer(account_id, email))
