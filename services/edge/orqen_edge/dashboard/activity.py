"""What the Requests and Sessions pages share: their URLs and how a recorded value is printed."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, cast
from urllib.parse import quote, urlencode

from orqen_edge.dashboard.web import FILTERS, PREFIX

REQUESTS_PATH = PREFIX + "/requests"
# Times print as every dashboard page prints them (the templates' `|when`).
_when = cast("Callable[[str], str]", FILTERS["when"])
SESSIONS_PATH = PREFIX + "/sessions"


def _with_query(path: str, query: Mapping[str, str]) -> str:
    kept = {k: v for k, v in query.items() if v}
    return path + (f"?{urlencode(kept)}" if kept else "")


def log_url(filters: Mapping[str, str], cursor: str = "") -> str:
    """The request log's URL with these filters (empty ones left out) and, past the first page, a cursor."""
    return _with_query(REQUESTS_PATH, {**filters, "cursor": cursor})


def sessions_url(**query: str) -> str:
    """The sessions list's URL with `limit` and `cursor` (empty ones left out)."""
    return _with_query(SESSIONS_PATH, query)


def session_url(session_id: str, **query: str) -> str:
    """The page of one session, with `limit` and `cursor` (empty ones left out). A session id is any
    printable ASCII the caller sent (`/`, `?`, `#` included): every character not plainly safe is
    percent-encoded."""
    return _with_query(f"{SESSIONS_PATH}/{quote(session_id, safe='')}", query)


def shown(name: str, value: Any) -> str:
    """A recorded value as a page prints it: units from the field's name, '—' for nothing recorded.

    An amount of money recorded as nothing is a price Orqen does not know: never shown as $0.
    """
    if value is None and name.endswith("_usd"):
        return "price unknown"
    if value is None or value == "" or value == []:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if name.endswith("_usd"):
        # One request costs fractions of a cent: cents alone would show most of them as $0.00.
        return "$0" if value == 0 else f"${value:,.2f}" if value >= 1 else f"${value:.6f}"
    if name.endswith("_ms"):
        return f"{value:,.1f} ms"
    if name.endswith("_at") and isinstance(value, str):
        return _when(value)
    if isinstance(value, int) and name != "status":
        return f"{value:,}"
    return str(value)


# The helpers templates of both pages call.
TEMPLATE_HELPERS: dict[str, Any] = {"shown": shown, "session_url": session_url, "log_url": log_url}
