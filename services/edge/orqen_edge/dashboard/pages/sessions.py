"""Sessions: the conversations X-Orqen-Session-Id groups requests into, and one session's
requests as a timeline linking to each request.

A session id is whatever printable ASCII the caller sent, `/`, `?` and `#` included: links carry
it fully percent-encoded, and the session page reads it back from the raw path.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import unquote

from litestar import Request, get
from litestar.di import NamedDependency
from litestar.params import FromQuery
from litestar.response import Template

from orqen_edge.account.responses import PageLimit
from orqen_edge.account.usage import page_of_sessions, session_with_requests
from orqen_edge.dashboard.activity import SESSIONS_PATH, TEMPLATE_HELPERS, log_url, session_url, sessions_url
from orqen_edge.dashboard.session_store import DashboardSession
from orqen_edge.dashboard.web import chart, lookup, page
from orqen_edge.runtime import Runtime

PAGE_SIZE = 50
# A timeline shows this many requests at a time, the earlier ones a link away.
TIMELINE_SIZE = 100


def _session_id(request: Request[Any, Any, Any], matched: str) -> str:
    """The session id as the link spelled it: from the raw path, since the decoded one has lost
    the difference between a `/` in the id and a path separator."""
    raw = request.scope.get("raw_path")
    prefix = (SESSIONS_PATH + "/").encode()
    if isinstance(raw, bytes) and raw.startswith(prefix):
        return unquote(raw[len(prefix) :].decode("latin-1"))
    return matched.lstrip("/")


def _parsed(iso: str) -> dt.datetime:
    return dt.datetime.fromisoformat(iso.removesuffix("Z"))


def _offset(seconds: float) -> str:
    """Time since the session's first request shown in the timeline: +4s, +2m 05s, +1h 03m."""
    whole = int(seconds)
    if whole < 60:
        return f"+{seconds:.1f}s"
    if whole < 3600:
        return f"+{whole // 60}m {whole % 60:02d}s"
    return f"+{whole // 3600}h {whole % 3600 // 60:02d}m"


def timeline(newest_first: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The requests oldest first, each with its time after the first one shown."""
    ordered = newest_first[::-1]
    if not ordered:
        return []
    start = _parsed(ordered[0]["created_at"])
    return [{**r, "offset": _offset((_parsed(r["created_at"]) - start).total_seconds())} for r in ordered]


def _tokens_chart(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """Tokens in and out of each request of the timeline, stacked, in the timeline's order."""
    return chart(
        "bar",
        [s["offset"] for s in steps],
        [
            {"label": "Input tokens", "data": [s["input_tokens"] for s in steps], "stack": "tokens"},
            {"label": "Output tokens", "data": [s["output_tokens"] for s in steps], "stack": "tokens"},
            {"label": "Tokens saved", "data": [s["tokens_saved"] for s in steps], "stack": "saved"},
        ],
        scales={"x": {"stacked": True}, "y": {"stacked": True, "beginAtZero": True}},
    )


@get(SESSIONS_PATH, include_in_schema=False)
async def sessions_page(
    runtime: NamedDependency[Runtime],
    session: NamedDependency[DashboardSession],
    cursor: FromQuery[str] = "",
    limit: PageLimit = PAGE_SIZE,
) -> Template:
    found = await page_of_sessions(runtime, session.account_id, limit, cursor)
    size = "" if limit == PAGE_SIZE else str(limit)
    return page(
        "sessions.html",
        session,
        active="sessions",
        sessions=found,
        first_page=not cursor,
        first_url=sessions_url(limit=size),
        next_url=sessions_url(limit=size, cursor=found["next_cursor"]) if found["has_more"] else "",
        **TEMPLATE_HELPERS,
    )


@get(SESSIONS_PATH + "/{session_id:path}", include_in_schema=False)
async def session_page(
    request: Request[Any, Any, Any],
    runtime: NamedDependency[Runtime],
    session: NamedDependency[DashboardSession],
    session_id: str,
    cursor: FromQuery[str] = "",
    limit: PageLimit = TIMELINE_SIZE,
) -> Template:
    sid = _session_id(request, str(session_id))
    conversation, requests = await lookup(session_with_requests(runtime, session.account_id, sid, limit, cursor))
    size = "" if limit == TIMELINE_SIZE else str(limit)
    steps = timeline(requests["data"])
    return page(
        "session.html",
        session,
        active="sessions",
        s=conversation,
        steps=steps,
        chart=_tokens_chart(steps) if steps else None,
        first_page=not cursor,
        earlier_url=session_url(sid, limit=size, cursor=requests["next_cursor"]) if requests["has_more"] else "",
        latest_url=session_url(sid, limit=size),
        session_log_url=log_url({"session_id": sid}),
        **TEMPLATE_HELPERS,
    )


ROUTES = (sessions_page, session_page)
