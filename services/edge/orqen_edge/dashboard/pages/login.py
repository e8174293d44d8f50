"""The sign-in page and sign-out: the HTML face of the JSON login (one `sign_in` behind both)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import grpc
from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromQuery
from litestar.response import Redirect, Template

from orqen_common.errors import OrqenError
from orqen_edge.dashboard.auth import COOKIE_NAME
from orqen_edge.dashboard.login import session_cookie, sign_in, sign_out
from orqen_edge.dashboard.session_store import DashboardSession
from orqen_edge.dashboard.web import LOGIN_PATH, LOGOUT_PATH, page, safe_next
from orqen_edge.runtime import Runtime

_MAX_FIELD = 1024
_CROSS_SITE = "This sign-in form was sent from another site. Open the sign-in page of this site and try again."


def _form_page(next_path: str, *, email: str = "", error: str = "", status_code: int = 200) -> Template:
    return page("login.html", None, next_path=next_path, email=email, error=error, status_code=status_code)


def from_this_site(request: Request[Any, Any, Any]) -> bool:
    """Login CSRF defence: the form must come from a page of this host (its Origin, else its Referer).
    A form posted by another site would sign the victim in to the attacker's account."""
    source = request.headers.get("origin") or request.headers.get("referer") or ""
    parts = urlsplit(source)
    host = request.headers.get("host", "").lower()
    return parts.scheme in ("http", "https") and bool(host) and parts.netloc.lower() == host


@get(LOGIN_PATH, include_in_schema=False)
async def login_form(
    request: Request[Any, Any, Any], runtime: NamedDependency[Runtime], next: FromQuery[str] = ""
) -> Template | Redirect:
    """The sign-in form; an owner already signed in goes straight on."""
    token = request.cookies.get(COOKIE_NAME)
    if token and await runtime.sessions.get(token) is not None:
        return Redirect(safe_next(next), status_code=303)
    return _form_page(safe_next(next))


@post(LOGIN_PATH, include_in_schema=False, status_code=303)
async def login_submit(request: Request[Any, Any, Any], runtime: NamedDependency[Runtime]) -> Response[Any]:
    form = await request.form()
    email = str(form.get("email", "")).strip().lower()[:_MAX_FIELD]
    password = str(form.get("password", ""))
    next_path = safe_next(str(form.get("next", "")))
    if not from_this_site(request):
        return _form_page(next_path, email=email, error=_CROSS_SITE, status_code=403)
    if not email or not password or len(password) > _MAX_FIELD:
        return _form_page(next_path, email=email, error="Enter your email and password.", status_code=400)
    try:
        token, _ = await sign_in(runtime, email, password)
    except OrqenError as err:
        # Too many failures (429) or sessions unavailable (503) keep the limiter's own words.
        wrong = err.kind.grpc_code == grpc.StatusCode.UNAUTHENTICATED
        message = "Wrong email or password." if wrong else err.message
        return _form_page(next_path, email=email, error=message, status_code=err.http_status)
    cookie = session_cookie(request, runtime, token, runtime.settings.session_max_seconds)
    return Redirect(next_path, status_code=303, cookies=[cookie])


@post(LOGOUT_PATH, include_in_schema=False, status_code=303)
async def logout(
    request: Request[Any, Any, Any], runtime: NamedDependency[Runtime], session: NamedDependency[DashboardSession]
) -> Redirect:
    """Sign out (the page guard has checked the session and its CSRF token)."""
    return Redirect(LOGIN_PATH, status_code=303, cookies=[await sign_out(request, runtime)])


ROUTES = (login_form, login_submit, logout)
