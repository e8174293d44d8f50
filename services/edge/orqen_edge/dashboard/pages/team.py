"""Team and profile: the account's owners, one-time sign-up links for new ones, removing one (never
the last), the signed-in owner's own password; and the sign-up page an invitation's link opens.

Every change goes through the account API's own functions (orqen_edge.account.owners), so the
rules (the last owner stays, a removed owner's sessions end, a new password ends the other
sessions) are the same whichever renderer asked.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template

from orqen_common.errors import OrqenError
from orqen_edge.account import owners
from orqen_edge.account.responses import plain
from orqen_edge.dashboard.auth import COOKIE_NAME
from orqen_edge.dashboard.pages.login import from_this_site
from orqen_edge.dashboard.session_store import DashboardSession
from orqen_edge.dashboard.web import LOGIN_PATH, PREFIX, is_htmx, lookup, page
from orqen_edge.runtime import Runtime

TEAM_PATH = PREFIX + "/team"
_MAX_FIELD = 1024
_CROSS_SITE = "This form was sent from another site. Open the sign-up link again and try once more."


async def _team_page(
    runtime: Runtime, session: DashboardSession, *, status_code: int = 200, **context: Any
) -> Template:
    listed = await runtime.downstream.list_owners(session.account_id)
    return page(
        "team.html",
        session,
        active="team",
        owners=[plain(o) for o in listed.owners],
        status_code=status_code,
        **context,
    )


def _field(form: Any, name: str) -> str:
    return str(form.get(name, ""))[:_MAX_FIELD]


@get(TEAM_PATH)
async def team(
    runtime: NamedDependency[Runtime], session: NamedDependency[DashboardSession], removed: FromQuery[str] = ""
) -> Template:
    return await _team_page(runtime, session, removed=removed[:_MAX_FIELD])


@post(TEAM_PATH + "/invites", status_code=200)
async def invite(
    request: Request[Any, Any, Any], runtime: NamedDependency[Runtime], session: NamedDependency[DashboardSession]
) -> Template:
    """A new sign-up link, shown in this answer only (htmx swaps it in; without htmx, the whole page)."""
    created = await owners.create_invite(runtime, session, str(request.base_url))
    if is_htmx(request):
        return page("_team_invite.html", session, invite=created)
    return await _team_page(runtime, session, invite=created)


@post(TEAM_PATH + "/owners/{owner_id:str}/remove", status_code=303)
async def remove(
    runtime: NamedDependency[Runtime], session: NamedDependency[DashboardSession], owner_id: FromPath[str]
) -> Template | Redirect:
    try:
        # An unknown id, a malformed one or another account's owner: the 404 page.
        removed = await lookup(owners.remove_owner(runtime, session, owner_id))
    except OrqenError as err:  # the last owner: the page says why, nothing changed
        return await _team_page(runtime, session, status_code=err.http_status, error=err.message)
    if removed.id == session.owner_id:
        return Redirect(LOGIN_PATH, status_code=303)  # removed oneself: every own session has ended
    return Redirect(f"{TEAM_PATH}?removed={removed.email}", status_code=303)


@post(TEAM_PATH + "/password", status_code=200)
async def change_password(
    request: Request[Any, Any, Any], runtime: NamedDependency[Runtime], session: NamedDependency[DashboardSession]
) -> Template:
    form = await request.form()
    current, new = _field(form, "current_password"), _field(form, "new_password")
    if new != _field(form, "confirm_password"):
        return await _team_page(runtime, session, status_code=400, password_error="The new passwords differ.")
    try:
        await owners.change_password(runtime, session, request.cookies[COOKIE_NAME], current, new)
    except OrqenError as err:
        return await _team_page(runtime, session, status_code=err.http_status, password_error=err.message)
    return await _team_page(runtime, session, password_changed=True)


@get(PREFIX + "/signup/{token:str}")
async def signup_form(token: FromPath[str]) -> Template:
    """The page an invitation's link opens: no session, the token in the URL is the credential."""
    return page("signup.html", None, token=token[:_MAX_FIELD])


@post(PREFIX + "/signup/{token:str}", status_code=200)
async def signup(request: Request[Any, Any, Any], runtime: NamedDependency[Runtime], token: FromPath[str]) -> Template:
    form = await request.form()
    email, password = _field(form, "email").strip(), _field(form, "password")

    def again(error: str, status_code: int) -> Template:
        return page("signup.html", None, token=token, email=email, error=error, status_code=status_code)

    if not from_this_site(request):
        return again(_CROSS_SITE, 403)
    if password != _field(form, "confirm_password"):
        return again("The passwords differ.", 400)
    try:
        created = await runtime.downstream.accept_owner_invite(token[:_MAX_FIELD], email, password)
    except OrqenError as err:
        return again(err.message, err.http_status)
    return page("signup.html", None, done=plain(created))


ROUTES = (team, invite, remove, change_password, signup_form, signup)
