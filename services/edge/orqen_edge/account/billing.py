"""Billing: the account's status (an API key or the dashboard session), billing's Stripe endpoints
(dashboard sessions only, never API keys), and Stripe's webhook, authenticated by its signature
(checked in billing)."""

from __future__ import annotations

from typing import Any

from litestar import Request, get, post
from litestar.di import NamedDependency

from orqen_common.context import Principal
from orqen_common.errors import invalid_request
from orqen_edge.account.responses import plain
from orqen_edge.dashboard.auth import KEY_OR_SESSION
from orqen_edge.dashboard.session_store import DashboardSession
from orqen_edge.request_body import read_json
from orqen_edge.runtime import Runtime

_SESSION_ID_LIMIT = 256


@get(
    "/v1/account/billing",
    summary="Subscription tier, usage so far and projected charge (API key or dashboard session)",
    dependencies=KEY_OR_SESSION,
)
async def billing(runtime: NamedDependency[Runtime], principal: NamedDependency[Principal]) -> dict[str, Any]:
    return plain(await runtime.downstream.get_billing(principal.account_id))


@post(
    "/v1/billing/create-checkout",
    summary="Start Stripe Checkout to upgrade to Pro (dashboard session)",
    status_code=200,
)
async def create_checkout(
    runtime: NamedDependency[Runtime], session: NamedDependency[DashboardSession]
) -> dict[str, Any]:
    return plain(await runtime.downstream.create_checkout(session.account_id, session.email))


@post("/v1/billing/customer-portal", summary="Open the Stripe customer portal", status_code=200)
async def customer_portal(
    runtime: NamedDependency[Runtime], session: NamedDependency[DashboardSession]
) -> dict[str, Any]:
    return plain(await runtime.downstream.create_portal(session.account_id))


@post("/v1/billing/sync-checkout", summary="Record the subscription after the Checkout redirect", status_code=200)
async def sync_checkout(
    request: Request[Any, Any, Any], runtime: NamedDependency[Runtime], session: NamedDependency[DashboardSession]
) -> dict[str, Any]:
    """Body: {"session_id": "cs_…"}, the id Stripe put in the success URL."""
    body = await read_json(request)
    session_id = body.get("session_id") if isinstance(body, dict) else None
    if not isinstance(session_id, str) or not session_id or len(session_id) > _SESSION_ID_LIMIT:
        raise invalid_request("'session_id' (the Checkout session id from the success URL) is required.")
    return plain(await runtime.downstream.sync_checkout(session.account_id, session_id))


@post(
    "/v1/billing/sync-subscription", summary="Refresh the subscription from Stripe (dashboard session)", status_code=200
)
async def sync_subscription(
    runtime: NamedDependency[Runtime], session: NamedDependency[DashboardSession]
) -> dict[str, Any]:
    return plain(await runtime.downstream.sync_subscription(session.account_id))


@post("/v1/billing/webhook", summary="Stripe webhook endpoint (Stripe-Signature checked)", status_code=200)
async def stripe_webhook(request: Request[Any, Any, Any], runtime: NamedDependency[Runtime]) -> dict[str, Any]:
    """The raw body goes to billing untouched: the signature covers its exact bytes."""
    outcome = await runtime.downstream.handle_webhook(await request.body(), request.headers.get("stripe-signature", ""))
    return {"received": True, "id": outcome.event_id, "type": outcome.type, "duplicate": outcome.duplicate}


ROUTES = (billing, create_checkout, customer_portal, sync_checkout, sync_subscription, stripe_webhook)
