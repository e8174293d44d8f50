"""Usage, analytics, sessions, optimization stats and tool health: the account's ledger over HTTP.

Every figure comes from accounting's daily rollups (summaries never scan the request log);
each route answers under its /v1/account/... path and the API-key alias the reference lists.
They are read-only routes the dashboard shows: an API key or a dashboard session reads them.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import get
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, QueryParameter

from orqen.v1 import usage_pb2
from orqen_common.context import Principal
from orqen_edge.account.request_log import page_of_requests, request_listing
from orqen_edge.account.responses import PageLimit, page, plain
from orqen_edge.dashboard.auth import KEY_OR_SESSION
from orqen_edge.openapi import API_KEY_OR_SESSION, AUTHENTICATED, errors
from orqen_edge.runtime import Runtime

_Days = Annotated[int, QueryParameter(ge=1, le=366, description="The last N UTC days, today included.")]


def _flat(totals: usage_pb2.UsageTotals, **head: Any) -> dict[str, Any]:
    return {**head, **plain(totals)}


async def page_of_sessions(runtime: Runtime, account_id: str, limit: int, cursor: str) -> dict[str, Any]:
    """One page of the account's sessions, most recently active first."""
    found = await runtime.downstream.list_sessions(account_id, limit, cursor)
    return page(found.sessions, found.next_cursor)


async def session_with_requests(
    runtime: Runtime, account_id: str, session_id: str, limit: int, cursor: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A session and one page of its requests, newest first.

    An unknown session (or another account's) is NOT_FOUND, not an empty page.
    """
    session = await runtime.downstream.get_session(account_id, session_id)
    listing = request_listing(account_id, limit, cursor, session_id=session_id)
    return plain(session), await page_of_requests(runtime, listing)


def savings_by_kind(breakdown: usage_pb2.SavingsBreakdown) -> dict[str, dict[str, float]]:
    """Tokens and dollars saved by tool routing and by context compression, apart. A model's dollars
    saved by the optimizer (its savings less what response cache hits saved) are its tokens saved at
    its input price, so they split between the two as its tokens do."""
    out = {kind: {"tokens": 0.0, "usd": 0.0} for kind in ("tools", "context")}
    for model in breakdown.models:
        for kind, tokens in (("tools", model.tool_tokens_saved), ("context", model.ctx_tokens_saved)):
            out[kind]["tokens"] += tokens
            if model.tokens_saved:
                optimizer_usd = model.savings_usd - model.cache_saved_usd
                out[kind]["usd"] += optimizer_usd * tokens / model.tokens_saved
    return out


def _rows(days: int, data: list[dict[str, Any]]) -> dict[str, Any]:
    """A list of rows over the period, with the number of days it covers."""
    return {"object": "list", "days": days, "data": data}


@get(
    ["/v1/account/usage/summary", "/v1/usage/summary"],
    summary="Current month: tokens, savings and cost by provider",
    dependencies=KEY_OR_SESSION,
    security=API_KEY_OR_SESSION,
    responses=errors(*AUTHENTICATED),
)
async def usage_summary(runtime: NamedDependency[Runtime], principal: NamedDependency[Principal]) -> dict[str, Any]:
    found = await runtime.downstream.get_usage_summary(principal.account_id)
    return _flat(
        found.totals,
        period_start=found.period_start,
        period_end=found.period_end,
        providers=[_flat(p.totals, provider=p.provider) for p in found.providers],
    )


@get(
    ["/v1/account/usage/daily", "/v1/usage/daily"],
    summary="Tokens, savings and cost per day (last 30 days)",
    dependencies=KEY_OR_SESSION,
    security=API_KEY_OR_SESSION,
    responses=errors(*AUTHENTICATED),
)
async def usage_daily(
    runtime: NamedDependency[Runtime], principal: NamedDependency[Principal], days: _Days = 30
) -> dict[str, Any]:
    found = await runtime.downstream.get_usage_daily(principal.account_id, days)
    return _rows(found.days, [_flat(d.totals, date=d.date) for d in found.data])


@get(
    ["/v1/account/usage/analytics/daily", "/v1/usage/analytics/daily"],
    summary="Daily success rate and latency percentiles",
    dependencies=KEY_OR_SESSION,
    security=API_KEY_OR_SESSION,
    responses=errors(*AUTHENTICATED),
)
async def analytics_daily(
    runtime: NamedDependency[Runtime], principal: NamedDependency[Principal], days: _Days = 30
) -> dict[str, Any]:
    found = await runtime.downstream.get_analytics_daily(principal.account_id, days)
    return _rows(found.days, [plain(d) for d in found.data])


@get(
    ["/v1/account/usage/analytics/savings", "/v1/usage/analytics/savings"],
    summary="Tokens and money saved by model and provider",
    dependencies=KEY_OR_SESSION,
    security=API_KEY_OR_SESSION,
    responses=errors(*AUTHENTICATED),
)
async def analytics_savings(
    runtime: NamedDependency[Runtime], principal: NamedDependency[Principal], days: _Days = 30
) -> dict[str, Any]:
    found = await runtime.downstream.get_savings(principal.account_id, days)
    return _flat(
        found.totals,
        days=found.days,
        models=[plain(m) for m in found.models],
        providers=[{k: v for k, v in plain(p).items() if k != "model"} for p in found.providers],
    )


@get(
    ["/v1/account/usage/analytics/latency", "/v1/usage/analytics/latency"],
    summary="Overall p50/p95 latency for the period",
    dependencies=KEY_OR_SESSION,
    security=API_KEY_OR_SESSION,
    responses=errors(*AUTHENTICATED),
)
async def analytics_latency(
    runtime: NamedDependency[Runtime], principal: NamedDependency[Principal], days: _Days = 30
) -> dict[str, Any]:
    return plain(await runtime.downstream.get_latency(principal.account_id, days))


@get(
    ["/v1/account/optimization/stats", "/v1/optimization/stats"],
    summary="Tools pruned, context compressed, tokens and money saved",
    dependencies=KEY_OR_SESSION,
    security=API_KEY_OR_SESSION,
    responses=errors(*AUTHENTICATED),
)
async def optimization_stats(
    runtime: NamedDependency[Runtime], principal: NamedDependency[Principal], days: _Days = 30
) -> dict[str, Any]:
    return plain(await runtime.downstream.get_optimization_stats(principal.account_id, days))


@get(
    ["/v1/account/tools/health", "/v1/tools/health"],
    summary="Per tool: offered, forwarded, called, errors",
    dependencies=KEY_OR_SESSION,
    security=API_KEY_OR_SESSION,
    responses=errors(*AUTHENTICATED),
)
async def tool_health(
    runtime: NamedDependency[Runtime],
    principal: NamedDependency[Principal],
    days: _Days = 30,
    limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 200,
) -> dict[str, Any]:
    found = await runtime.downstream.get_tool_health(principal.account_id, days, limit)
    return _rows(found.days, [plain(t) for t in found.tools])


@get(
    "/v1/account/sessions",
    summary="Conversation sessions (grouped by X-Orqen-Session-Id), most recent first",
    dependencies=KEY_OR_SESSION,
    security=API_KEY_OR_SESSION,
    responses=errors(*AUTHENTICATED),
)
async def list_sessions(
    runtime: NamedDependency[Runtime],
    principal: NamedDependency[Principal],
    limit: PageLimit = 50,
    cursor: FromQuery[str] = "",
) -> dict[str, Any]:
    return await page_of_sessions(runtime, principal.account_id, limit, cursor)


@get(
    "/v1/account/sessions/{session_id:str}/requests",
    summary="Requests within a session, newest first",
    dependencies=KEY_OR_SESSION,
    security=API_KEY_OR_SESSION,
    responses=errors(*AUTHENTICATED, 404),
)
async def session_requests(
    runtime: NamedDependency[Runtime],
    principal: NamedDependency[Principal],
    session_id: FromPath[str],
    limit: PageLimit = 50,
    cursor: FromQuery[str] = "",
) -> dict[str, Any]:
    _, requests = await session_with_requests(runtime, principal.account_id, session_id, limit, cursor)
    return requests


ROUTES = (
    usage_summary,
    usage_daily,
    analytics_daily,
    analytics_savings,
    analytics_latency,
    optimization_stats,
    tool_health,
    list_sessions,
    session_requests,
)
