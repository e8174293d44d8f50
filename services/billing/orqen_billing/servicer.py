"""The orqen.v1.Billing gRPC service."""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg
import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from orqen.v1 import billing_pb2, billing_pb2_grpc
from orqen_billing.metering import Period, projected_charge_cents
from orqen_billing.settings import FREE_TIER, BillingSettings
from orqen_billing.stripe_billing import StripeBilling
from orqen_billing.webhooks import WebhookHandler
from orqen_common.context import account_scope, require_service
from orqen_common.errors import OrqenError
from orqen_common.grpc_server import ServicerContext

LOCAL_MODE = (
    "Stripe is not configured on this Orqen deployment (local billing mode): tiers and the projected "
    "charge work, Checkout, the customer portal and webhooks need STRIPE_SECRET_KEY on the billing service."
)
NO_WEBHOOK_SECRET = "Stripe webhooks need STRIPE_WEBHOOK_SECRET on the billing service."


class BillingServicer(billing_pb2_grpc.BillingServicer):
    """`stripe` and `webhooks` are None in local mode (no Stripe secret key, or no webhook secret)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        settings: BillingSettings,
        stripe: StripeBilling | None = None,
        webhooks: WebhookHandler | None = None,
    ) -> None:
        self._pool = pool
        self._settings = settings
        self._stripe = stripe
        self._webhooks = webhooks

    async def GetBilling(
        self, request: billing_pb2.GetBillingRequest, context: ServicerContext
    ) -> billing_pb2.BillingStatus:
        return await self._status(account_scope(request.account_id))

    async def CreateCheckout(
        self, request: billing_pb2.CreateCheckoutRequest, context: ServicerContext
    ) -> billing_pb2.StripeRedirect:
        session = await self._stripe_for(request.account_id).create_checkout(request.account_id, request.email)
        return _redirect(session)

    async def CreatePortal(
        self, request: billing_pb2.CreatePortalRequest, context: ServicerContext
    ) -> billing_pb2.StripeRedirect:
        return _redirect(await self._stripe_for(request.account_id).create_portal(request.account_id))

    async def SyncCheckout(
        self, request: billing_pb2.SyncCheckoutRequest, context: ServicerContext
    ) -> billing_pb2.BillingStatus:
        await self._stripe_for(request.account_id).sync_checkout(request.account_id, request.session_id)
        return await self._status(request.account_id)

    async def SyncSubscription(
        self, request: billing_pb2.GetBillingRequest, context: ServicerContext
    ) -> billing_pb2.BillingStatus:
        await self._stripe_for(request.account_id).sync_subscription(request.account_id)
        return await self._status(request.account_id)

    async def HandleWebhook(
        self, request: billing_pb2.WebhookDelivery, context: ServicerContext
    ) -> billing_pb2.WebhookOutcome:
        require_service()
        if self._stripe is None:
            raise OrqenError.of(grpc.StatusCode.UNIMPLEMENTED, LOCAL_MODE)
        if self._webhooks is None:
            raise OrqenError.of(grpc.StatusCode.UNIMPLEMENTED, NO_WEBHOOK_SECRET)
        outcome = await self._webhooks.handle(request.payload, request.signature)
        return billing_pb2.WebhookOutcome(
            event_id=outcome.event_id, type=outcome.type, duplicate=outcome.duplicate, applied=outcome.applied
        )

    def _stripe_for(self, account_id: str) -> StripeBilling:
        """Stripe calls move money: only the edge (for a dashboard session) makes them, never an API key."""
        require_service()
        account_scope(account_id)  # a service must still name the account
        if self._stripe is None:
            raise OrqenError.of(grpc.StatusCode.UNIMPLEMENTED, LOCAL_MODE)
        return self._stripe

    async def _status(self, account_id: str) -> billing_pb2.BillingStatus:
        now = dt.datetime.now(dt.UTC)
        period = Period.month_of(now)
        row = await self._pool.fetchrow(
            """
            SELECT s.tier, s.status, m.requests, m.tokens
            FROM (SELECT count(*) AS requests, coalesce(sum(tokens), 0)::bigint AS tokens
                  FROM metered_requests WHERE account_id = $1::uuid AND created_at >= $2 AND created_at < $3) m
            LEFT JOIN subscriptions s ON s.account_id = $1::uuid
            """,
            account_id,
            period.start,
            period.end,
        )
        assert row is not None
        plans = self._settings.plans
        tier = row["tier"] if row["tier"] in plans else FREE_TIER
        plan = plans[tier]
        return billing_pb2.BillingStatus(
            tier=tier,
            period_start=_timestamp(period.start),
            period_end=_timestamp(period.end),
            requests=row["requests"],
            tokens=row["tokens"],
            included_tokens=plan.included_tokens,
            projected_charge_cents=projected_charge_cents(plan, row["tokens"], period.elapsed_fraction(now)),
            currency=self._settings.currency,
            subscription_status=row["status"] or "",
            base_cents=plan.base_cents,
            overage_cents_per_million=plan.overage_cents_per_million,
            stripe_enabled=self._stripe is not None,
        )


def _timestamp(value: dt.datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def _redirect(session: dict[str, Any]) -> billing_pb2.StripeRedirect:
    return billing_pb2.StripeRedirect(id=str(session["id"]), url=str(session.get("url") or ""))
