"""Dashboard-session authentication as Litestar dependencies (API keys: orqen_edge.auth).

State-changing requests must echo the session's CSRF token in `X-CSRF-Token` (the
synchronizer token pattern; the SameSite=Lax cookie is the second line of defence).
API keys and sessions are separate credentials: a session-only route refuses a request
that carries an API key with 403, and API-key routes never look at the cookie.
"""

from __future__ import annotations

import hmac
from typing import Any

import grpc
from litestar import Request
from litestar.di import NamedDependency, Provide

from orqen_common.context import Principal, principal_var
from orqen_common.errors import OrqenError, unauthenticated
from orqen_edge.auth import api_key_principal
from orqen_edge.dashboard.session_store import DashboardSession
from orqen_edge.runtime import Runtime

COOKIE_NAME = "orqen_session"
CSRF_HEADER = "x-csrf-token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
API_KEY_REFUSED = (
    "This endpoint needs a dashboard session (log in with POST /v1/dashboard/login); API keys are not accepted here."
)


def carries_api_key(request: Request[Any, Any, Any]) -> bool:
    return bool(request.headers.get("authorization") or request.headers.get("x-api-key"))


async def dashboard_session(request: Request[Any, Any, Any], runtime: NamedDependency[Runtime]) -> DashboardSession:
    """The caller's dashboard session; state-changing methods must also present its CSRF token."""
    if carries_api_key(request):
        raise OrqenError.of(grpc.StatusCode.PERMISSION_DENIED, API_KEY_REFUSED)
    token = request.cookies.get(COOKIE_NAME)
    if not token:
        raise unauthenticated("Log in first: this endpoint needs a dashboard session (POST /v1/dashboard/login).")
    session = await runtime.sessions.get(token)
    if session is None:
        raise unauthenticated("Your dashboard session expired or was logged out; log in again.")
    if request.method not in _SAFE_METHODS:
        presented = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(presented.encode(), session.csrf_token.encode()):
            raise OrqenError.of(
                grpc.StatusCode.PERMISSION_DENIED, f"Missing or wrong {CSRF_HEADER} header for this session."
            )
    principal_var.set(session.principal())
    return session


async def key_or_session_principal(request: Request[Any, Any, Any], runtime: NamedDependency[Runtime]) -> Principal:
    """For read-only account routes the dashboard shows too: an API key when one is sent, else the session."""
    if carries_api_key(request) or COOKIE_NAME not in request.cookies:
        return await api_key_principal(request, runtime)
    return (await dashboard_session(request, runtime)).principal()


# Read-only account routes the dashboard shows: an API key when one is sent, else the dashboard session.
KEY_OR_SESSION = {"principal": Provide(key_or_session_principal)}
