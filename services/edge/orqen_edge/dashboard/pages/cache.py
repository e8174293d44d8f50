"""Response cache: whether requests use it by default and for how long it keeps an answer (a form),
what it holds, and purging it. Through the account API's own functions (orqen_edge.account.cache)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.response import Template

from orqen_edge.account.cache import CacheSettingsUpdate, cache_state, update_cache
from orqen_edge.dashboard.forms import attempt, form_fields, form_struct
from orqen_edge.dashboard.session_store import DashboardSession
from orqen_edge.dashboard.web import form_answer, page
from orqen_edge.runtime import Runtime


@get("/dashboard/cache")
async def cache_page(runtime: NamedDependency[Runtime], session: NamedDependency[DashboardSession]) -> Template:
    return page("cache.html", session, active="cache", **await _state(runtime, session))


@post("/dashboard/cache", status_code=200)
async def save(
    request: Request[Any, Any, Any], runtime: NamedDependency[Runtime], session: NamedDependency[DashboardSession]
) -> Response[Any]:
    """Saves the settings: an unchecked box is sent as nothing, so "enabled" is whether the box was sent."""
    fields: dict[str, Any] = {**await form_fields(request)}
    fields["enabled"] = "enabled" in fields
    _, error = await attempt(
        lambda: update_cache(runtime, session.account_id, form_struct(fields, CacheSettingsUpdate))
    )
    answer = {"error": error, "saved": not error}
    return await form_answer(
        request, session, error, active="cache", context=lambda: _state(runtime, session), **answer
    )


async def _state(runtime: Runtime, session: DashboardSession) -> dict[str, Any]:
    return {"cache": await cache_state(runtime, session.account_id)}


@post("/dashboard/cache/purge", status_code=200)
async def purge(
    request: Request[Any, Any, Any], runtime: NamedDependency[Runtime], session: NamedDependency[DashboardSession]
) -> Response[Any]:
    """Deletes every answer the account's cache holds."""
    purged = await runtime.downstream.purge_response_cache(session.account_id)
    return await form_answer(
        request, session, None, active="cache", context=lambda: _state(runtime, session), purged=purged.entries
    )


ROUTES = (cache_page, save, purge)
