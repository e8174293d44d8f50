"""Billing: the tier, tokens used against those included, the projected charge and this period's
tokens per day; Upgrade (Stripe Checkout) and Manage (the customer portal).

This is the page Stripe sends the browser back to (ORQEN_DASHBOARD_URL/billing): with
`checkout_session_id` in the query it syncs that Checkout session itself and shows the new tier.
In local mode (billing without a Stripe key) it says billing is off and why.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromQuery
from litestar.response import Redirect, Template

from orqen_common.errors import OrqenError
from orqen_edge.account.responses import plain
from orqen_edge.dashboard.session_store import DashboardSession
from orqen_edge.dashboard.web import PREFIX, chart, is_htmx, page
from orqen_edge.runtime import Runtime

BILLING_PATH = PREFIX + "/billing"
_MAX_SESSION_ID = 256


def _period_days(period_start: str) -> int:
    """Days of the billing period so far, today included (the usage calls count back in days)."""
    if not period_start:
        return dt.datetime.now(dt.UTC).day
    started = dt.date.fromisoformat(period_start[:10])
    return max(1, (dt.datetime.now(dt.UTC).date() - started).days + 1)


async def _billing_page(
    runtime: Runtime, session: DashboardSession, *, status_code: int = 200, **context: Any
) -> Template:
    status = plain(await runtime.downstream.get_billing(session.account_id))
    daily = await runtime.downstream.get_usage_daily(session.account_id, _period_days(status["period_start"] or ""))
    tokens = chart(
        "bar",
        [d.date[5:] for d in daily.data],
        [{"label": "Tokens", "data": [d.totals.input_tokens + d.totals.output_tokens for d in daily.data]}],
        scales={"y": {"beginAtZero": True}},
    )
    return page(
        "billing.html", session, active="billing", billing=status, chart=tokens, status_code=status_code, **context
    )


@get(BILLING_PATH)
async def billing(
    runtime: NamedDependency[Runtime],
    session: NamedDependency[DashboardSession],
    checkout_session_id: FromQuery[str] = "",
    checkout: FromQuery[str] = "",
) -> Template:
    """The billing page; back from Checkout (`checkout_session_id`), it records the subscription first."""
    if not checkout_session_id:
        return await _billing_page(runtime, session, canceled=checkout == "canceled")
    try:
        await runtime.downstream.sync_checkout(session.account_id, checkout_session_id[:_MAX_SESSION_ID])
    except OrqenError as err:
        return await _billing_page(runtime, session, status_code=err.http_status, error=err.message)
    return await _billing_page(runtime, session, upgraded=True)


def _to_stripe(request: Request[Any, Any, Any], url: str) -> Response[Any]:
    """Off to a Stripe page. htmx gets HX-Redirect (a navigation, which the CSP's form-action does not
    cover); a plain form post a 303."""
    if is_htmx(request):
        return Response(b"", status_code=200, headers={"HX-Redirect": url})
    return Redirect(url, status_code=303)


@post(BILLING_PATH + "/checkout", status_code=303)
async def upgrade(
    request: Request[Any, Any, Any], runtime: NamedDependency[Runtime], session: NamedDependency[DashboardSession]
) -> Response[Any]:
    try:
        redirect = await runtime.downstream.create_checkout(session.account_id, session.email)
    except OrqenError as err:
        return await _billing_page(runtime, session, status_code=err.http_status, error=err.message)
    return _to_stripe(request, redirect.url)


@post(BILLING_PATH + "/portal", status_code=303)
async def manage(
    request: Request[Any, Any, Any], runtime: NamedDependency[Runtime], session: NamedDependency[DashboardSession]
) -> Response[Any]:
    try:
        redirect = await runtime.downstream.create_portal(session.account_id)
    except OrqenError as err:
        return await _billing_page(runtime, session, status_code=err.http_status, error=err.message)
    return _to_stripe(request, redirect.url)


ROUTES = (billing, upgrade, manage)
