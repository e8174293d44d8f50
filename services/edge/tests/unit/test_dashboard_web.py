"""The dashboard's pure rules: where `next=` may lead, when the session cookie is Secure, which sign-in
forms come from this site, that every dashboard answer carries the security headers, and that each
vendored front-end library says where it came from and under which licence."""

from types import SimpleNamespace
from typing import Any, cast

import pytest
from litestar import Request
from litestar.testing import TestClient

from orqen_edge.app import create_app
from orqen_edge.dashboard.login import cookie_is_secure
from orqen_edge.dashboard.pages.login import from_this_site
from orqen_edge.dashboard.web import SECURITY_HEADERS, STATIC_DIR, _asked_for, login_url, safe_next
from orqen_edge.runtime import Runtime


@pytest.mark.parametrize(
    "target",
    [
        "/dashboard",
        "/dashboard/requests",
        "/dashboard/requests?model=gpt-4o&status=500",
        "/dashboard/sessions/abc%20def",
    ],
)
def test_next_keeps_a_local_dashboard_path(target: str) -> None:
    assert safe_next(target) == target


@pytest.mark.parametrize(
    "target",
    [
        "",
        None,
        "https://evil.example/dashboard",
        "//evil.example/dashboard",
        "///evil.example",
        "/\\evil.example",
        "\\\\evil.example",
        "javascript:alert(1)",
        "/dashboardx",
        "/v1/models",
        "/dashboard/login",
        "/dashboard/login?next=/dashboard",
        "/dashboard\r\nSet-Cookie: x=1",
        "dashboard",
    ],
)
def test_next_refuses_anything_else(target: str | None) -> None:
    assert safe_next(target) == "/dashboard"


def test_the_sign_in_url_carries_next_only_when_it_says_something() -> None:
    assert login_url("/dashboard") == "/dashboard/login"
    assert login_url("//evil.example") == "/dashboard/login"
    assert login_url("/dashboard/keys?x=1") == "/dashboard/login?next=/dashboard/keys%3Fx%3D1"


def _request(url: str, method: str = "POST", **headers: str) -> Request[Any, Any, Any]:
    scheme, rest = url.split("://", 1)
    host, _, path_query = rest.partition("/")
    path, _, query = path_query.partition("?")
    scope = {
        "type": "http",
        "method": method,
        "scheme": scheme,
        "server": (host.rsplit(":", 1)[0], 80),
        "path": "/" + path,
        "query_string": query.encode(),
        "headers": [(b"host", host.encode())] + [(k.encode(), v.encode()) for k, v in headers.items()],
    }
    return Request(cast(Any, scope))


def test_sign_in_comes_back_to_the_page_not_to_a_partial_or_a_form_target() -> None:
    here = "http://localhost:8080"
    assert _asked_for(_request(f"{here}/dashboard/requests?model=x", "GET")) == "/dashboard/requests?model=x"
    htmx = {"hx-request": "true", "hx-current-url": f"{here}/dashboard/requests?status=500"}
    assert _asked_for(_request(f"{here}/dashboard/requests/rows?cursor=c", "GET", **htmx)) == (
        "/dashboard/requests?status=500"
    )
    posted = _request(f"{here}/dashboard/keys/k1/revoke", referer=f"{here}/dashboard/keys")
    assert _asked_for(posted) == "/dashboard/keys"
    assert safe_next(_asked_for(_request(f"{here}/dashboard/logout"))) == "/dashboard"


def _runtime(secure: bool) -> Runtime:
    return cast(Runtime, SimpleNamespace(settings=SimpleNamespace(session_cookie_secure=secure)))


@pytest.mark.parametrize(
    ("url", "setting", "secure"),
    [
        ("https://orqen.example.com/dashboard/login", True, True),
        ("https://localhost:8443/dashboard/login", True, True),
        ("https://orqen.example.com/dashboard/login", False, True),  # HTTPS is always Secure
        ("http://orqen.example.com/dashboard/login", True, True),
        ("http://orqen.example.com/dashboard/login", False, False),  # plain HTTP on purpose
        ("http://localhost:8080/dashboard/login", True, False),  # make up's URL
        ("http://127.0.0.1:8080/dashboard/login", True, False),
        ("http://[::1]:8080/dashboard/login", True, False),
        ("http://localhost.evil.example/dashboard/login", True, True),
    ],
)
def test_the_cookie_is_secure_except_over_plain_http_to_this_machine(url: str, setting: bool, secure: bool) -> None:
    assert cookie_is_secure(_request(url), _runtime(setting)) is secure


@pytest.mark.parametrize(
    ("headers", "ours"),
    [
        ({"origin": "http://localhost:8080"}, True),
        ({"referer": "http://localhost:8080/dashboard/login?next=/dashboard"}, True),
        ({"origin": "https://localhost:8080"}, True),  # TLS ended by a proxy in front
        ({"origin": "http://evil.example"}, False),
        ({"origin": "http://localhost:8081"}, False),
        ({"origin": "null"}, False),
        ({"referer": "http://evil.example/http://localhost:8080"}, False),
        ({}, False),
    ],
)
def test_a_sign_in_form_counts_only_from_this_host(headers: dict[str, str], ours: bool) -> None:
    assert from_this_site(_request("http://localhost:8080/dashboard/login", **headers)) is ours


def test_every_dashboard_answer_carries_the_security_headers_and_api_answers_do_not() -> None:
    # These answers need no connection: the static files, the API's JSON 404, the dashboard's HTML 404.
    runtime = cast(Runtime, SimpleNamespace(settings=SimpleNamespace(max_body_bytes=1024)))
    with TestClient(create_app(runtime)) as client:
        for path in ("/dashboard/static/dashboard.js", "/dashboard/no-such-page", "/"):
            answer = client.get(path, follow_redirects=False)
            for name, value in SECURITY_HEADERS.items():
                assert answer.headers[name] == value, (path, name)
        missing = client.get("/dashboard/no-such-page")
        assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/html")
        assert "Not found" in missing.text
        api = client.get("/v1/no-such-route")
        assert api.status_code == 404 and api.json()["error"]["type"] == "not_found_error"
        assert "content-security-policy" not in api.headers
        swagger = client.get("/schema")
        assert "/dashboard/static/vendor/swagger-ui/swagger-ui-bundle.js" in swagger.text
        assert "cdn." not in swagger.text and "https://" not in swagger.text.split("<body")[0]


def test_each_vendored_library_names_its_version_and_licence_and_ships_its_files() -> None:
    vendored = sorted(p for p in (STATIC_DIR / "vendor").iterdir() if p.is_dir())
    assert [p.name for p in vendored] == ["chartjs", "htmx", "swagger-ui"]
    for library in vendored:
        version = (library / "VERSION").read_text()
        assert "https://registry.npmjs.org/" in version, library  # where the published build came from
        assert (library / "LICENSE").stat().st_size > 0, library
        shipped = version.split("(", 1)[1].rstrip(")\n")
        for name in shipped.split(", "):
            assert (library / name.removeprefix("dist/")).is_file(), (library, name)
