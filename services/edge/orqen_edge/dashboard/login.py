"""Dashboard login and logout for account owners (email + password), and the current session.

Owners are created by the operator (`orqen owners create`); there is no public sign-up,
so a self-hosted gateway on the internet does not hand out accounts to strangers.
"""

from __future__ import annotations

import contextlib
import hashlib
from typing import Annotated, Any

import grpc
import msgspec
import structlog
from litestar import Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency
from msgspec import Meta
from redis.exceptions import RedisError

from orqen_common.errors import OrqenError, invalid_request
from orqen_edge.dashboard.auth import COOKIE_NAME, carries_api_key
from orqen_edge.dashboard.session_store import DashboardSession
from orqen_edge.openapi import DASHBOARD_SESSION, SESSION, errors, json_body
from orqen_edge.request_body import read_struct
from orqen_edge.runtime import Runtime

_FAILURE_WINDOW_SECONDS = 15 * 60
_RETRY_AFTER_UNAVAILABLE_SECONDS = 5
_MAX_FIELD = 1024
_Field = Annotated[str, Meta(min_length=1, max_length=_MAX_FIELD)]


class Credentials(msgspec.Struct):
    """An account owner's email and password."""

    email: _Field
    password: _Field


log = structlog.get_logger(__name__)


def _session_body(runtime: Runtime, session: DashboardSession) -> dict[str, Any]:
    return {
        "object": "dashboard.session",
        "owner": {"id": session.owner_id, "email": session.email},
        "account": {"id": session.account_id, "name": session.account_name},
        "csrf_token": session.csrf_token,
        "expires_at": int(runtime.sessions.expires_at(session)),
    }


# Hosts a browser reaches only from the machine itself: there, plain HTTP carries the cookie.
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


def cookie_is_secure(request: Request[Any, Any, Any], runtime: Runtime) -> bool:
    """`Secure` always over HTTPS; over plain HTTP too (the cookie then never comes back over plain
    HTTP) unless the browser talks to a loopback host (development: `make up` on http://localhost)
    or ORQEN_SESSION_COOKIE_SECURE=false says this deployment is plain HTTP on purpose."""
    if request.url.scheme == "https":
        return True
    loopback = (request.url.hostname or "").lower() in _LOOPBACK_HOSTS
    return runtime.settings.session_cookie_secure and not loopback


def session_cookie(request: Request[Any, Any, Any], runtime: Runtime, value: str, max_age: int) -> Cookie:
    return Cookie(
        key=COOKIE_NAME,
        value=value,
        max_age=max_age,
        path="/",
        secure=cookie_is_secure(request, runtime),
        httponly=True,
        samesite="lax",  # Lax, not Strict: the browser must still send it when Stripe redirects back
    )


async def sign_in(runtime: Runtime, email: str, password: str) -> tuple[str, DashboardSession]:
    """Check an owner's email and password under the failed-login limit; a new session and its cookie
    token. The JSON login and the dashboard's sign-in form both come here."""
    failures = FailedLogins(runtime, email)
    await failures.admit()
    try:
        owner = await runtime.downstream.verify_owner(email, password)
    except OrqenError as err:
        if err.kind.grpc_code != grpc.StatusCode.UNAUTHENTICATED:
            await failures.forget_attempt()
        raise
    await failures.clear()
    return await runtime.sessions.create(owner.id, owner.email, owner.account_id, owner.account_name)


async def sign_out(request: Request[Any, Any, Any], runtime: Runtime) -> Cookie:
    """End the caller's session; the cookie that clears it in the browser."""
    token = request.cookies.get(COOKIE_NAME)
    if token:
        await runtime.sessions.delete(token)
    return session_cookie(request, runtime, "", 0)


def _credentials(body: Credentials) -> tuple[str, str]:
    if not body.email.strip():
        raise invalid_request("'email' is required.")
    return body.email.strip().lower(), body.password


@post(
    "/v1/dashboard/login",
    summary="Log an account owner in; sets the session cookie",
    status_code=200,
    operation_class=json_body(Credentials),
    responses=errors(400, 401, 403, 413, 415, 429, 500, 503),
)
async def login(request: Request[Any, Any, Any], runtime: NamedDependency[Runtime]) -> Response[dict[str, Any]]:
    """Answers the session (with its CSRF token) and sets an HttpOnly cookie."""
    if carries_api_key(request):
        raise OrqenError.of(grpc.StatusCode.PERMISSION_DENIED, "Log in with an email and a password, not an API key.")
    email, password = _credentials(await read_struct(request, Credentials))
    token, session = await sign_in(runtime, email, password)
    return Response(
        _session_body(runtime, session),
        cookies=[session_cookie(request, runtime, token, runtime.settings.session_max_seconds)],
    )


@post(
    "/v1/dashboard/logout",
    summary="End the dashboard session",
    status_code=200,
    security=DASHBOARD_SESSION,
    responses=errors(*SESSION),
)
async def logout(
    request: Request[Any, Any, Any], runtime: NamedDependency[Runtime], session: NamedDependency[DashboardSession]
) -> Response[dict[str, Any]]:
    return Response({"logged_out": True}, cookies=[await sign_out(request, runtime)])


@get(
    "/v1/dashboard/session",
    summary="The current dashboard session and its CSRF token",
    security=DASHBOARD_SESSION,
    responses=errors(*SESSION),
)
async def current_session(
    runtime: NamedDependency[Runtime], session: NamedDependency[DashboardSession]
) -> dict[str, Any]:
    return _session_body(runtime, session)


class FailedLogins:
    """Failed logins per email in a window, so passwords cannot be guessed at network speed.

    Each attempt is counted before its password is checked and the count taken back when the
    password was right or the check could not be made: concurrent guesses cannot all pass
    before any is counted, and a Redis that cannot count (down, paused, refusing writes) stops
    logins with 503 instead of letting guesses through uncounted. Logging in needs Redis anyway
    (the session lives there).
    """

    def __init__(self, runtime: Runtime, email: str) -> None:
        self._redis = runtime.redis
        self._limit = runtime.settings.login_max_failures
        self._key = "orqen:login-failures:" + hashlib.sha256(email.encode()).hexdigest()

    async def admit(self) -> None:
        """Count this attempt; refuse it when the email's failures are used up or cannot be counted."""
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                # The window starts at the first attempt; INCR keeps the TTL that SET gave.
                pipe.set(self._key, 0, ex=_FAILURE_WINDOW_SECONDS, nx=True)
                pipe.incr(self._key)
                _, attempts = await pipe.execute()
        except RedisError as err:
            log.warning("login failures cannot be counted; login refused", error=str(err))
            raise OrqenError.of(
                grpc.StatusCode.UNAVAILABLE,
                "Logins are unavailable right now; try again shortly.",
                retry_after=_RETRY_AFTER_UNAVAILABLE_SECONDS,
            ) from None
        if int(attempts) > self._limit:
            raise OrqenError.of(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "Too many failed logins for this email; try again in 15 minutes.",
                retry_after=_FAILURE_WINDOW_SECONDS,
            )

    async def forget_attempt(self) -> None:
        """Take this attempt back: its password was not found wrong (the check failed for another reason)."""
        with contextlib.suppress(RedisError):
            await self._redis.decr(self._key)

    async def clear(self) -> None:
        """The password was right: the email's earlier failures no longer count."""
        with contextlib.suppress(RedisError):
            await self._redis.delete(self._key)


ROUTES = (login, logout, current_session)
