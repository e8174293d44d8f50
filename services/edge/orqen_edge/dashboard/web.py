"""What every dashboard page shares: the navigation, the signed-in session guard, the CSRF check,
the page response, the 404 lookup, the security headers and the HTML error pages.

Pages are server-rendered Jinja templates (autoescaped) made live by htmx; the browser runs only
files served from /dashboard/static (the Content-Security-Policy allows nothing else).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import grpc
import structlog
from litestar import Request, Response
from litestar.datastructures import CacheControlHeader, MutableScopeHeaders
from litestar.di import NamedDependency, Provide
from litestar.exceptions import HTTPException, NotFoundException
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect, Template
from litestar.types import Message, Scope

from orqen_common.context import principal_var
from orqen_common.errors import OrqenError
from orqen_edge.dashboard.auth import COOKIE_NAME, CSRF_HEADER
from orqen_edge.dashboard.session_store import DashboardSession
from orqen_edge.runtime import Runtime

PREFIX = "/dashboard"
LOGIN_PATH = PREFIX + "/login"
LOGOUT_PATH = PREFIX + "/logout"
STATIC_PATH = PREFIX + "/static"
TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"
CSRF_FIELD = "csrf_token"
# Vendored and dashboard files change only with a release; browsers may keep them an hour.
STATIC_CACHE = CacheControlHeader(max_age=3600, public=True)
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class NavItem:
    key: str
    label: str
    path: str


NAV: tuple[NavItem, ...] = (
    NavItem("overview", "Overview", PREFIX),
    NavItem("requests", "Requests", PREFIX + "/requests"),
    NavItem("sessions", "Sessions", PREFIX + "/sessions"),
    NavItem("routing", "Routing", PREFIX + "/routing"),
    NavItem("tools", "Tools", PREFIX + "/tools"),
    NavItem("keys", "API keys", PREFIX + "/keys"),
    NavItem("budgets", "Budgets", PREFIX + "/budgets"),
    NavItem("cache", "Cache", PREFIX + "/cache"),
    NavItem("providers", "Providers", PREFIX + "/providers"),
    NavItem("team", "Team", PREFIX + "/team"),
    NavItem("billing", "Billing", PREFIX + "/billing"),
)

# Sent with every answer under /dashboard (pages, partials, static files, errors) and with `/`.
# No inline script or style anywhere: behaviour lives in static .js files, looks in dashboard.css.
SECURITY_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "font-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def is_dashboard_path(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


async def add_security_headers(message: Message, scope: Scope) -> None:
    """The app's `before_send` hook: security headers on every dashboard answer, errors included;
    pages (not static files) are never cached, since they show one owner's data."""
    if message["type"] != "http.response.start":
        return
    path = scope["path"]
    if not (is_dashboard_path(path) or path == "/"):
        return
    headers = MutableScopeHeaders.from_message(message)
    for name, value in SECURITY_HEADERS.items():
        headers[name] = value
    if not path.startswith(STATIC_PATH + "/"):
        headers["Cache-Control"] = "no-store"


def safe_next(target: str | None) -> str:
    """Where to go after sign-in: only a local dashboard path (never another host, scheme or the
    sign-in page itself), anything else becomes the Overview."""
    if not target or any(c in target for c in "\\\r\n\t") or target.startswith("//"):
        return PREFIX
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not is_dashboard_path(parts.path) or parts.path.startswith(LOGIN_PATH):
        return PREFIX
    return target


def login_url(next_path: str) -> str:
    target = safe_next(next_path)
    return LOGIN_PATH if target == PREFIX else f"{LOGIN_PATH}?next={quote(target, safe='/')}"


def _asked_for(request: Request[Any, Any, Any]) -> str:
    """The page to come back to after sign-in: the one asked for; for an htmx request the page it was
    made from (not the partial), for a form sent the page holding the form (a POST URL is no page)."""
    if is_htmx(request) and (current := request.headers.get("hx-current-url")):
        parts = urlsplit(current)
    elif request.method not in _SAFE_METHODS:
        parts = urlsplit(request.headers.get("referer", ""))
    else:
        parts = urlsplit(str(request.url))
    return parts.path + (f"?{parts.query}" if parts.query else "")


class SignInRequiredError(Exception):
    """No valid session: the page guard sends the browser to sign-in, then back to `next_path`."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def is_htmx(request: Request[Any, Any, Any]) -> bool:
    """Whether htmx sent the request (answer a partial, not the whole page)."""
    return request.headers.get("hx-request") == "true"


def sign_in_redirect(request: Request[Any, Any, Any], exc: SignInRequiredError) -> Response[Any]:
    target = login_url(exc.next_path)
    if is_htmx(request):
        # A redirect would be followed by the XHR and swap the sign-in page into a fragment.
        return Response(b"", status_code=200, headers={"HX-Redirect": target})
    return Redirect(target, status_code=303)


async def check_csrf(request: Request[Any, Any, Any], session: DashboardSession) -> None:
    """Refuse (403) a state change without the session's CSRF token, sent as the `csrf_token` form field
    or the X-CSRF-Token header (base.html makes htmx send the header with every request)."""
    presented = request.headers.get(CSRF_HEADER, "")
    if not presented and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()
        value = form.get(CSRF_FIELD, "")
        presented = value if isinstance(value, str) else ""
    if not presented or not hmac.compare_digest(presented.encode(), session.csrf_token.encode()):
        raise HTTPException(status_code=403, detail="This form is out of date; reload the page and try again.")


async def page_session(request: Request[Any, Any, Any], runtime: NamedDependency[Runtime]) -> DashboardSession:
    """The `session` of every dashboard page handler: the signed-in owner, or a trip to sign-in.
    State-changing methods are refused without the CSRF token here too, so no handler can forget it."""
    token = request.cookies.get(COOKIE_NAME)
    session = await runtime.sessions.get(token) if token else None
    if session is None:
        raise SignInRequiredError(_asked_for(request))
    if request.method not in _SAFE_METHODS:
        await check_csrf(request, session)
    principal_var.set(session.principal())
    return session


# The dependency the dashboard's router gives its handlers: a handler asks for `session`.
PAGE_DEPENDENCIES = {"session": Provide(page_session)}


def page(
    template: str, session: DashboardSession | None, active: str = "", *, status_code: int = 200, **context: Any
) -> Template:
    """A dashboard page (or partial) rendered with the signed-in session, its CSRF token and the nav."""
    return Template(
        template_name=template,
        context={
            "session": session,
            "csrf_token": session.csrf_token if session else "",
            "nav": NAV,
            "active": active,
            **context,
        },
        status_code=status_code,
    )


async def form_answer(
    request: Request[Any, Any, Any],
    session: DashboardSession,
    refused: str | None,
    *,
    active: str,
    context: Callable[[], Awaitable[dict[str, Any]]],
    **shown: Any,
) -> Response[Any]:
    """How a settings form's POST is answered (`refused`: why the services refused it, None when it worked).

    A plain POST that worked goes back to its page (303); under htmx, the page's panel
    (`_<active>_panel.html`), 200 even when refused, as htmx swaps in only 2xx answers; a refused
    plain POST, the whole page with the refusal (422). `context`: what the page shows, `shown` (the
    refusal, what was saved) over it.
    """
    if not is_htmx(request) and refused is None:
        return Redirect(f"{PREFIX}/{active}", status_code=303)
    template = f"_{active}_panel.html" if is_htmx(request) else f"{active}.html"
    status = 422 if refused and not is_htmx(request) else 200
    return page(template, session, active, status_code=status, **{**await context(), **shown})


T = TypeVar("T")
E = TypeVar("E", bound=Exception)

# gRPC answers that mean "no such thing for this account" on a page whose URL names an id.
_NOT_FOUND_CODES = (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT)


async def lookup(call: Awaitable[T]) -> T:
    """Await a gRPC lookup by id; an unknown id, a malformed one or another account's answers the 404 page."""
    try:
        return await call
    except OrqenError as err:
        if err.kind.grpc_code in _NOT_FOUND_CODES:
            raise NotFoundException() from None
        raise


def chart(kind: str, labels: Sequence[Any], datasets: Sequence[Mapping[str, Any]], **options: Any) -> dict[str, Any]:
    """The `data-chart` JSON dashboard.js draws with Chart.js (`{{ chart|tojson }}` in the template)."""
    return {"type": kind, "labels": list(labels), "datasets": [dict(d) for d in datasets], "options": options}


def error_page(request: Request[Any, Any, Any], status: int, message: str) -> Template:
    """An HTML error answer for a dashboard path (the API paths keep their SDK-shaped JSON)."""
    name = "404.html" if status == 404 else "error.html"
    return page(name, None, status_code=status, status=status, message=message)


def _status_and_message(request: Request[Any, Any, Any], exc: Exception) -> tuple[int, str]:
    if isinstance(exc, OrqenError):
        return exc.http_status, exc.message
    if isinstance(exc, HTTPException):
        if exc.status_code == 404:
            return 404, "There is no such page, or it belongs to another account."
        return exc.status_code, str(exc.detail)
    log.exception("unhandled error", path=request.url.path)
    request_id = request.scope.get("state", {}).get("request_id", "")
    return 500, f"Something went wrong on our side (request id {request_id})."


def or_error_page(api_handler: Callable[[Request[Any, Any, Any], E], Response[Any]]) -> Callable[..., Response[Any]]:
    """An app exception handler that answers the dashboard's HTML error page on a dashboard path
    and `api_handler`'s SDK-shaped JSON everywhere else."""

    def handle(request: Request[Any, Any, Any], exc: E) -> Response[Any]:
        if not is_dashboard_path(request.url.path):
            return api_handler(request, exc)
        status, message = _status_and_message(request, exc)
        return error_page(request, status, message)

    return handle


def _num(value: float | int) -> str:
    return f"{round(value):,}"


def _usd(value: float) -> str:
    if value == 0 or abs(value) >= 0.01:
        return f"${value:,.2f}"
    # Fractions of a cent (one small request): enough digits to not read as nothing.
    return f"${value:.6f}".rstrip("0") if abs(value) >= 0.000001 else "<$0.000001"


def _cents(value: int, currency: str = "usd") -> str:
    symbol = "$" if currency.lower() == "usd" else currency.upper() + " "
    return f"{symbol}{value / 100:,.2f}"


def _when(iso: str | None) -> str:
    """An ISO 8601 time as the account API answers it ("2026-12-02T14:03:05.123Z") -> "2026-12-02 14:03:05 UTC"."""
    if not iso:
        return "—"
    return iso.replace("T", " ")[:19] + " UTC"


def _pct(share: float) -> str:
    return f"{share * 100:.1f}%"


# Formats every template uses: `{{ n|num }}`, `{{ dollars|usd }}`, `{{ cents|cents(currency) }}`,
# `{{ iso_time|when }}`, `{{ share|pct }}` (0.953 -> 95.3%).
FILTERS = {"num": _num, "usd": _usd, "cents": _cents, "when": _when, "pct": _pct}


def configure_templates(engine: JinjaTemplateEngine) -> None:
    """The TemplateConfig's engine callback: the dashboard's filters."""
    engine.engine.filters.update(FILTERS)
