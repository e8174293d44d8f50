"""Billing: the account's status (an API key or the dashboard session), billing's Stripe endpoints
(dashboard sessions only, never API keys), and Stripe's webhook, authenticated by its signature
(checked in billing)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, get, post
from litestar.di import NamedDependency
from msgspec import Meta

from orqen_common.context import Principal
from orqen_edge.account.responses import plain
from orqen_edge.dashboard.auth import KEY_OR_SESSION
from orqen_edge.dashboard.session_store import DashboardSession
from orqen_edge.openapi import API_KEY_OR_SESSION, AUTHENTICATED, BODY, DASHBOARD_SESSION, SESSION, errors, json_body
from orqen_edge.request_body import read_struct
from orqen_edge.runtime import Runtime

# Stripe's endpoints: 501 while billing runs in local mode (no Stripe key).
_STRIPE = errors(*SESSION, 501)


class CheckoutSync(msgspec.Struct):
    """The Checkout session Stripe named in the success URL."""

    session_id: Annotated[str, Meta(min_length=1, max_length=256, description="The `cs_…` id.")]


class WebhookReceipt(msgspec.Struct):
    """What Stripe is told about one delivered event; a `duplicate` was already processed."""

    received: bool
    id: str
    type: str
    duplicate: bool


@get(
    "/v1/account/billing",
    summary="Subscription tier, usage so far and projected charge (API key or dashboard session)",
    dependencies=KEY_OR_SESSION,
    security=API_KEY_OR_SESSION,
    responses=errors(*AUTHENTICATED),
)
async def billing(runtime: NamedDependency[Runtime], principal: NamedDependency[Principal]) -> dict[str, Any]:
    return plain(await runtime.downstream.get_billing(principal.account_id))


@post(
    "/v1/billing/create-checkout",
    summary="Start Stripe Checkout to upgrade to Pro (dashboard session)",
    status_code=200,
    security=DASHBOARD_SESSION,
    responses=_STRIPE,
)
async def create_checkout(
    runtime: NamedDependency[Runtime], session: NamedDependency[DashboardSession]
) -> dict[str, Any]:
    return plain(await runtime.downstream.create_checkout(session.account_id, session.email))


@post(
    "/v1/billing/customer-portal",
    summary="Open the Stripe customer portal",
    status_code=200,
    security=DASHBOARD_SESSION,
    responses=_STRIPE,
)
async def customer_portal(
    runtime: NamedDependency[Runtime], session: NamedDependency[DashboardSession]
) -> dict[str, Any]:
    return plain(await runtime.downstream.create_portal(session.account_id))


@post(
    "/v1/billing/sync-checkout",
    summary="Record the subscription after the Checkout redirect",
    status_code=200,
    security=DASHBOARD_SESSION,
    operation_class=json_body(CheckoutSync),
    responses={**_STRIPE, **errors(*BODY)},
)
async def sync_checkout(
    request: Request[Any, Any, Any], runtime: NamedDependency[Runtime], session: NamedDependency[DashboardSession]
) -> dict[str, Any]:
    body = await read_struct(request, CheckoutSync)
    return plain(await runtime.downstream.sync_checkout(session.account_id, body.session_id))


@post(
    "/v1/billing/sync-subscription",
    summary="Refresh the subscription from Stripe (dashboard session)",
    status_code=200,
    security=DASHBOARD_SESSION,
    responses=_STRIPE,
)
async def sync_subscription(
    runtime: NamedDependency[Runtime], session: NamedDependency[DashboardSession]
) -> dict[str, Any]:
    return plain(await runtime.downstream.sync_subscription(session.account_id))


@post(
    "/v1/billing/webhook",
    summary="Stripe webhook endpoint (Stripe-Signature checked)",
    status_code=200,
    responses=errors(400, 413, 500, 501, 503),
)
async def stripe_webhook(request: Request[Any, Any, Any], runtime: NamedDependency[Runtime]) -> WebhookReceipt:
    """The raw body goes to billing untouched: the signature covers its exact bytes."""
    outcome = await runtime.downstream.handle_webhook(await request.body(), request.headers.get("stripe-signature", ""))
    return WebhookReceipt(received=True, id=outcome.event_id, type=outcome.type, duplicate=outcome.duplicate)


ROUTES = (billing, create_checkout, customer_portal, sync_checkout, sync_subscription, stripe_webhook)
