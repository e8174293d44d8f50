"""Account API: the account's owners (the people who sign in to its dashboard), invitations
for new ones, and each owner's own password.

Listing answers an API key or the dashboard session; everything that changes who can sign in
needs the dashboard session and its CSRF token, never an API key. The functions below the
routes are what the dashboard's Team page calls too: one rule, two renderers.
"""

from __future__ import annotations

from typing import Annotated, Any

import grpc
import msgspec
from litestar import Request, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from msgspec import Meta

from orqen.v1 import accounting_pb2
from orqen_common.context import Principal
from orqen_common.errors import OrqenError
from orqen_edge.account.responses import listing, plain
from orqen_edge.dashboard.auth import COOKIE_NAME, KEY_OR_SESSION
from orqen_edge.dashboard.login import FailedLogins
from orqen_edge.dashboard.session_store import DashboardSession
from orqen_edge.openapi import API_KEY_OR_SESSION, AUTHENTICATED, BODY, DASHBOARD_SESSION, SESSION, errors, json_body
from orqen_edge.request_body import read_struct
from orqen_edge.runtime import Runtime

_MAX_FIELD = 1024
_Field = Annotated[str, Meta(min_length=1, max_length=_MAX_FIELD)]
SIGNUP_PATH = "/dashboard/signup/"


class PasswordChange(msgspec.Struct):
    """The signed-in owner's current password and the new one (12 to 1024 characters)."""

    current_password: _Field
    new_password: _Field


class Signup(msgspec.Struct):
    """A new owner's sign-up through an invitation: its token, and the email and password to sign in with."""

    token: _Field
    email: _Field
    password: _Field


class CreatedInvite(msgspec.Struct):
    """A one-time sign-up link; `token` and `url` are shown only here."""

    id: str
    token: str
    url: str
    expires_at: str


# --- What the account API and the dashboard both call ------------------------------------------


def invite_url(base_url: str, token: str) -> str:
    """The sign-up page of the invitation, on the edge the owner is using."""
    return base_url.rstrip("/") + SIGNUP_PATH + token


async def create_invite(runtime: Runtime, session: DashboardSession, base_url: str) -> CreatedInvite:
    invite = await runtime.downstream.create_owner_invite(session.account_id, session.owner_id)
    fields = plain(invite)
    return CreatedInvite(
        id=invite.id, token=invite.token, url=invite_url(base_url, invite.token), expires_at=fields["expires_at"]
    )


async def remove_owner(runtime: Runtime, session: DashboardSession, owner_id: str) -> accounting_pb2.Owner:
    """Remove an owner of the session's account (never its last); the removed owner is signed out everywhere."""
    removed = await runtime.downstream.remove_owner(session.account_id, owner_id)
    await runtime.sessions.end_owner_sessions(removed.id)
    return removed


async def change_password(
    runtime: Runtime, session: DashboardSession, session_token: str, current: str, new: str
) -> accounting_pb2.Owner:
    """Change the signed-in owner's password; its other sessions end, the one making the change stays.

    A wrong current password counts as a failed login of the owner's email: a session left open on
    someone else's screen cannot be used to guess the password faster than the sign-in form can."""
    failures = FailedLogins(runtime, session.email)
    await failures.admit()
    try:
        owner = await runtime.downstream.change_owner_password(session.account_id, session.owner_id, current, new)
    except OrqenError as err:
        if err.kind.grpc_code != grpc.StatusCode.PERMISSION_DENIED:
            await failures.forget_attempt()
        raise
    await failures.clear()
    await runtime.sessions.end_owner_sessions(owner.id, keep_token=session_token)
    return owner


# --- Routes ------------------------------------------------------------------------------------


@get(
    "/v1/account/owners",
    summary="The account's owners, oldest first (API key or dashboard session)",
    dependencies=KEY_OR_SESSION,
    security=API_KEY_OR_SESSION,
    responses=errors(*AUTHENTICATED),
)
async def list_owners(runtime: NamedDependency[Runtime], principal: NamedDependency[Principal]) -> dict[str, Any]:
    return listing((await runtime.downstream.list_owners(principal.account_id)).owners)


@post(
    "/v1/account/owners/invites",
    summary="A one-time sign-up link for a new owner (dashboard session); shown only in this response",
    status_code=201,
    security=DASHBOARD_SESSION,
    responses=errors(*SESSION),
)
async def invite_owner(
    request: Request[Any, Any, Any], runtime: NamedDependency[Runtime], session: NamedDependency[DashboardSession]
) -> CreatedInvite:
    return await create_invite(runtime, session, str(request.base_url))


@delete(
    "/v1/account/owners/{owner_id:str}",
    summary="Remove an owner (never the last); its sessions end",
    status_code=200,
    security=DASHBOARD_SESSION,
    responses=errors(*SESSION, 404),
)
async def delete_owner(
    runtime: NamedDependency[Runtime], session: NamedDependency[DashboardSession], owner_id: FromPath[str]
) -> dict[str, Any]:
    return plain(await remove_owner(runtime, session, owner_id))


@post(
    "/v1/account/owners/me/password",
    summary="Change the signed-in owner's password; its other sessions end",
    status_code=200,
    security=DASHBOARD_SESSION,
    operation_class=json_body(PasswordChange),
    responses=errors(*SESSION, *BODY, 429),
)
async def change_own_password(
    request: Request[Any, Any, Any], runtime: NamedDependency[Runtime], session: NamedDependency[DashboardSession]
) -> dict[str, Any]:
    body = await read_struct(request, PasswordChange)
    token = request.cookies[COOKIE_NAME]
    return plain(await change_password(runtime, session, token, body.current_password, body.new_password))


@post(
    "/v1/dashboard/signup",
    summary="Become an owner through a one-time sign-up link's token; then log in",
    status_code=201,
    operation_class=json_body(Signup),
    responses=errors(*BODY, 404, 409, 500, 503),
)
async def signup(request: Request[Any, Any, Any], runtime: NamedDependency[Runtime]) -> dict[str, Any]:
    """No credentials: the invitation's token is one (unknown, used or expired: 404)."""
    body = await read_struct(request, Signup)
    return plain(await runtime.downstream.accept_owner_invite(body.token, body.email, body.password))


ROUTES = (list_owners, invite_owner, delete_owner, change_own_password, signup)
