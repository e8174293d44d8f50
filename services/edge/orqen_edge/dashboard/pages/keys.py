"""API keys: the list with last use, creating one (its plaintext shown once) and revoking one after
a confirmation. Through the account API's own functions (orqen_edge.account.keys)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import Redirect, Template

from orqen_common.errors import not_found
from orqen_edge.account.keys import KeyCreation, new_key
from orqen_edge.account.responses import plain
from orqen_edge.dashboard.forms import attempt, form_fields, form_struct
from orqen_edge.dashboard.session_store import DashboardSession
from orqen_edge.dashboard.web import is_htmx, lookup, page
from orqen_edge.runtime import Runtime


async def _keys(runtime: Runtime, session: DashboardSession) -> list[dict[str, Any]]:
    return [plain(k) for k in (await runtime.downstream.list_api_keys(session.account_id)).keys]


@get("/dashboard/keys")
async def keys_page(runtime: NamedDependency[Runtime], session: NamedDependency[DashboardSession]) -> Template:
    return page("keys.html", session, active="keys", keys=await _keys(runtime, session))


@post("/dashboard/keys", status_code=200)
async def create_key(
    request: Request[Any, Any, Any], runtime: NamedDependency[Runtime], session: NamedDependency[DashboardSession]
) -> Template:
    """Creates a key and shows its plaintext in this answer only (it is never stored or shown again)."""
    fields = await form_fields(request)
    created, error = await attempt(lambda: new_key(runtime, session.account_id, form_struct(fields, KeyCreation)))
    keys = await _keys(runtime, session)
    template = "_keys_panel.html" if is_htmx(request) else "keys.html"
    # The plaintext is in this answer only; dashboard pages are never cached (web.add_security_headers).
    # htmx swaps in only 2xx answers, so a refused form goes back to it with 200.
    status = 422 if error and template == "keys.html" else 200
    return page(template, session, active="keys", status_code=status, keys=keys, created=created, error=error)


@get("/dashboard/keys/{key_id:str}/revoke")
async def confirm_revoke(
    request: Request[Any, Any, Any],
    runtime: NamedDependency[Runtime],
    session: NamedDependency[DashboardSession],
    key_id: FromPath[str],
) -> Template:
    """Asks for a confirmation: inline in the key's row under htmx, as a page of its own otherwise."""
    key = next((k for k in await _keys(runtime, session) if k["id"] == key_id), None)
    if key is None or key["revoked_at"]:
        raise not_found(f"No active API key {key_id} in this account.")
    template = "_keys_confirm_row.html" if is_htmx(request) else "keys_revoke.html"
    return page(template, session, active="keys", key=key)


@post("/dashboard/keys/{key_id:str}/revoke", status_code=200)
async def revoke_key(
    request: Request[Any, Any, Any],
    runtime: NamedDependency[Runtime],
    session: NamedDependency[DashboardSession],
    key_id: FromPath[str],
) -> Response[Any]:
    """Revokes the key at once (accounting also drops it from the auth cache)."""
    revoked = plain(await lookup(runtime.downstream.revoke_api_key(session.account_id, key_id)))
    if not is_htmx(request):
        return Redirect("/dashboard/keys", status_code=303)
    return page("_keys_row.html", session, active="keys", key=revoked)


ROUTES = (keys_page, create_key, confirm_revoke, revoke_key)
