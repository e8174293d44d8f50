"""Requests: the request log (filters, keyset paging, live refresh) and one request with its
attempts, its x-orqen-* headers and its routing trace drawn.

The filters are a GET form, so a filtered view is a URL to bookmark or share; the log is read
with the account API's own query builder (`request_listing`) and page shape (`page_of_requests`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import grpc
from litestar import Request, get
from litestar.di import NamedDependency
from litestar.params import FromQuery
from litestar.response import Template

from orqen.v1 import optimizer_pb2
from orqen_common.errors import OrqenError
from orqen_common.proxy_families import FAMILIES, ingress
from orqen_common.routing_modes import AB_CONTROL_SUFFIX
from orqen_edge.account.request_log import page_of_requests, request_listing
from orqen_edge.account.responses import PageLimit, plain
from orqen_edge.dashboard.activity import REQUESTS_PATH, TEMPLATE_HELPERS, log_url, shown
from orqen_edge.dashboard.session_store import DashboardSession
from orqen_edge.dashboard.web import chart, lookup, page
from orqen_edge.ingress.pipeline import orqen_headers
from orqen_edge.runtime import Runtime

PAGE_SIZE = 50
# The element htmx polls on the first page: a request targeting it gets the table alone.
LOG_TARGET = "request-log"
STATUSES = (("", "any status"), ("success", "success"), ("error", "error"))
# Where requests come in: the three SDK shapes, then the stateless proxy families.
INGRESSES = ("openai", "anthropic", "bedrock", *(ingress(f) for f in FAMILIES))

# Every field of a request record, grouped as its page shows them (a unit test checks none is left out).
# The attempts and the routing trace have sections of their own.
FIELD_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Request", ("request_id", "created_at", "session_id", "ingress", "stream", "api_key_id", "account_id")),
    ("Outcome", ("status", "error", "model_requested", "model_used", "provider", "route_reason")),
    ("Tokens", ("input_tokens", "output_tokens", "cached_input_tokens", "cache_write_input_tokens")),
    ("Money", ("cost_usd", "savings_usd", "price_unknown", "budget_warning", "cache", "cache_saved_usd")),
    ("Time", ("latency_ms", "upstream_ms", "gateway_ms", "ttft_ms")),
    (
        "Optimization",
        (
            "routing",
            "tools_input",
            "tools_output",
            "k",
            "k_reason",
            "tools_called",
            "tool_tokens_in",
            "tool_tokens_out",
            "tool_tokens_saved",
            "ctx_tokens_in",
            "ctx_tokens_out",
            "ctx_tokens_saved",
            "tokens_saved",
        ),
    ),
)
SECTIONS = ("attempts", "trace")

# Bar colours of the trace chart: Chart.js draws them on the canvas (no style attribute involved).
_CALLED, _FORWARDED, _LEFT_OUT = "#15803d", "#2563eb", "#9ca3af"


def _label(name: str) -> str:
    words = name.replace("_ms", "").replace("_usd", "").replace("ctx", "context").replace("_", " ")
    return words[:1].upper() + words[1:]


def record_fields(record: Mapping[str, Any]) -> list[tuple[str, list[tuple[str, str, str]]]]:
    """The record's fields by group, each as (name, label, value shown)."""
    return [(group, [(n, _label(n), shown(n, record[n])) for n in names]) for group, names in FIELD_GROUPS]


def logged_headers(record: Mapping[str, Any]) -> dict[str, str]:
    """The x-orqen-* headers the caller got, rebuilt from the record by the function that sent them."""
    stats = optimizer_pb2.PlanStats(
        tools_input=record["tools_input"],
        tools_output=record["tools_output"],
        routing=record["routing"],
        ctx_tokens_in=record["ctx_tokens_in"],
        ctx_tokens_out=record["ctx_tokens_out"],
        # The log keeps context token counts only for a compressed context.
        context_compressed=record["ctx_tokens_in"] > 0,
    )
    return orqen_headers(record["model_used"], stats)


def trace_view(trace: Mapping[str, Any] | None, called: Sequence[str]) -> dict[str, Any] | None:
    """The routing decision as the page draws it: the candidates in the router's order (the
    forwarded first), which were forwarded (the first K, less those that made way for the tools
    learned usage added, and those; every one on A/B control traffic), why a stage added one,
    and which were called."""
    if not trace:
        return None
    everything = str(trace["mode"]).endswith(AB_CONTROL_SUFFIX)
    learned = {t.get("name", ""): t.get("reason", "") for t in trace.get("learned", [])}
    displaced = set(trace.get("displaced", []))
    rows = [
        {
            "rank": rank,
            "name": c["name"],
            "score": c["score"],
            "forwarded": everything or (rank <= trace["k"] and c["name"] not in displaced) or c["name"] in learned,
            "why": c.get("added_because")
            or learned.get(c["name"], "")
            or ("made way for a learned tool" if c["name"] in displaced else ""),
            "called": c["name"] in called,
        }
        for rank, c in enumerate(trace["candidates"], start=1)
    ]
    colours = [_CALLED if r["called"] else _FORWARDED if r["forwarded"] else _LEFT_OUT for r in rows]
    scores = chart(
        "bar",
        [f"{r['rank']}. {r['name']}" for r in rows],
        [{"label": "Score", "data": [r["score"] for r in rows], "backgroundColor": colours}],
        indexAxis="y",
        maintainAspectRatio=False,
        plugins={"legend": {"display": False}},
        scales={"x": {"beginAtZero": True}},
    )
    ranked = {r["name"] for r in rows}
    return {
        **trace,
        "rows": rows,
        "chart": scores,
        "forwarded_all": everything,
        "unranked_calls": [name for name in called if name not in ranked],
    }


def _chart_height(rows: int) -> str:
    """A CSS class sizing the trace chart's box to its number of bars (no inline style under the CSP)."""
    return f"chart-rows-{min(max(5, -(-rows // 5) * 5), 30)}"


@get(REQUESTS_PATH, include_in_schema=False)
async def requests_page(
    request: Request[Any, Any, Any],
    runtime: NamedDependency[Runtime],
    session: NamedDependency[DashboardSession],
    model: FromQuery[str] = "",
    status: FromQuery[str] = "",
    session_id: FromQuery[str] = "",
    ingress: FromQuery[str] = "",
    since: FromQuery[str] = "",
    until: FromQuery[str] = "",
    cursor: FromQuery[str] = "",
    limit: PageLimit = PAGE_SIZE,
) -> Template:
    filters = {
        "model": model.strip(),
        "status": status.strip(),
        "session_id": session_id,
        "ingress": ingress.strip(),
        "since": since.strip(),
        "until": until.strip(),
    }
    log: dict[str, Any] = {"data": [], "has_more": False, "next_cursor": None}
    problem = ""
    try:
        listing = request_listing(session.account_id, limit, cursor, **filters)
        log = await page_of_requests(runtime, listing)
    except OrqenError as err:
        # A filter accounting cannot read (a bad time, a status that is no HTTP code) is the owner's
        # to fix: the form comes back with the reason, not an error page.
        if err.kind.grpc_code != grpc.StatusCode.INVALID_ARGUMENT:
            raise
        problem = err.message
    polled = request.headers.get("hx-target") == LOG_TARGET
    # Links keep the page size the URL asked for.
    kept = {**filters, "limit": "" if limit == PAGE_SIZE else str(limit)}
    return page(
        "_requests_table.html" if polled else "requests.html",
        session,
        active="requests",
        status_code=400 if problem else 200,
        filters=filters,
        statuses=STATUSES,
        ingresses=INGRESSES,
        log=log,
        problem=problem,
        first_page=not cursor,
        this_url=log_url(kept, cursor),
        first_url=log_url(kept),
        next_url=log_url(kept, log["next_cursor"]) if log["next_cursor"] else "",
        target=LOG_TARGET,
        **TEMPLATE_HELPERS,
    )


@get(REQUESTS_PATH + "/{request_id:str}", include_in_schema=False)
async def request_page(
    runtime: NamedDependency[Runtime], session: NamedDependency[DashboardSession], request_id: str
) -> Template:
    record = plain(await lookup(runtime.downstream.get_request(session.account_id, request_id)))
    trace = trace_view(record["trace"], record["tools_called"])
    return page(
        "request.html",
        session,
        active="requests",
        r=record,
        groups=record_fields(record),
        headers=logged_headers(record),
        attempts=record["attempts"],
        trace=trace,
        chart_height=_chart_height(len(trace["rows"])) if trace else "",
        **TEMPLATE_HELPERS,
    )


ROUTES = (requests_page, request_page)
