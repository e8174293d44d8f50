"""The dashboard's defences in a browser and on the wire: failed sign-ins, the failed-login limit,
an expired session, `next=` kept local, login CSRF, the CSRF token on state changes, the cookie's
flags and the security headers of every dashboard answer."""

from __future__ import annotations

import hashlib
import ssl
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.async_api import Page
from redis.asyncio import Redis

from dashboard_browser import Owner, problems, screenshot, sign_in, visit

SESSION_COOKIE = "orqen_session"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


def _path(page: Page) -> str:
    parts = urlsplit(page.url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _form(owner: Owner, password: str | None = None, next_path: str = "") -> dict[str, str]:
    return {"email": owner.email, "password": password or owner.password, "next": next_path}


async def test_a_wrong_password_says_so_and_keeps_the_email(anon_page: Page, owner: Owner) -> None:
    await anon_page.goto("/dashboard/login")
    await anon_page.fill("input[name=email]", owner.email)
    await anon_page.fill("input[name=password]", "not the password")
    async with anon_page.expect_navigation():
        await anon_page.click("button[type=submit]")
    assert _path(anon_page) == "/dashboard/login"
    assert await anon_page.inner_text("[role=alert]") == "Wrong email or password."
    assert await anon_page.input_value("input[name=email]") == owner.email
    await screenshot(anon_page, "sign-in-failed")


async def test_too_many_failures_lock_the_email_even_with_the_right_password(
    anon_page: Page, owner: Owner, stack: Any
) -> None:
    origin = {"origin": stack.info.edge_url}
    async with httpx.AsyncClient(base_url=stack.info.edge_url, headers=origin, timeout=30) as http:
        for _ in range(10):  # ORQEN_LOGIN_MAX_FAILURES' default
            wrong = await http.post("/dashboard/login", data=_form(owner, "a wrong guess"))
            assert wrong.status_code == 401
    await anon_page.goto("/dashboard/login")
    await anon_page.fill("input[name=email]", owner.email)
    await anon_page.fill("input[name=password]", owner.password)
    async with anon_page.expect_navigation():
        await anon_page.click("button[type=submit]")
    assert _path(anon_page) == "/dashboard/login"
    assert "Too many failed logins" in await anon_page.inner_text("[role=alert]")
    assert SESSION_COOKIE not in {c["name"] for c in await anon_page.context.cookies()}


async def test_an_expired_session_signs_in_again_and_returns_to_the_page_asked_for(
    page: Page, owner: Owner, stack: Any
) -> None:
    token = next(c["value"] for c in await page.context.cookies() if c["name"] == SESSION_COOKIE)
    redis = Redis.from_url(stack.service_env["ORQEN_REDIS_URL"])
    try:  # The session ends in Redis (idle timeout, max age): the cookie the browser holds is dead.
        assert await redis.delete("orqen:dashboard-session:" + hashlib.sha256(token.encode()).hexdigest()) == 1
    finally:
        await redis.aclose()
    await page.goto("/dashboard?from=bookmark")
    assert _path(page) == "/dashboard/login?next=/dashboard%3Ffrom%3Dbookmark"
    assert "Sign in to open that page." in await page.inner_text("main")
    await page.fill("input[name=email]", owner.email)
    await page.fill("input[name=password]", owner.password)
    async with page.expect_navigation():
        await page.click("button[type=submit]")
    assert _path(page) == "/dashboard?from=bookmark"


async def test_an_htmx_request_without_a_session_is_sent_to_sign_in_by_hx_redirect(stack: Any) -> None:
    async with httpx.AsyncClient(base_url=stack.info.edge_url, timeout=30) as http:
        answer = await http.get(
            "/dashboard", headers={"hx-request": "true", "hx-current-url": f"{stack.info.edge_url}/dashboard?x=1"}
        )
    assert answer.status_code == 200
    assert answer.headers["hx-redirect"] == "/dashboard/login?next=/dashboard%3Fx%3D1"


@pytest.mark.parametrize(
    "target",
    ["https://evil.example/", "//evil.example/dashboard", "/\\evil.example", "javascript:alert(1)", "/v1/models"],
)
async def test_next_never_leaves_the_dashboard(anon_page: Page, owner: Owner, target: str) -> None:
    await sign_in(anon_page, owner, next_path=target)
    assert urlsplit(anon_page.url).netloc == urlsplit(anon_page.context.pages[0].url).netloc
    assert _path(anon_page) == "/dashboard"


async def test_a_sign_in_form_posted_from_another_site_is_refused(owner: Owner, stack: Any) -> None:
    async with httpx.AsyncClient(base_url=stack.info.edge_url, timeout=30) as http:
        for headers in ({"origin": "https://evil.example"}, {"referer": "https://evil.example/page"}, {}):
            answer = await http.post("/dashboard/login", data=_form(owner), headers=headers)
            assert answer.status_code == 403, headers
            assert "another site" in answer.text
            assert SESSION_COOKIE not in answer.cookies
        same_site = await http.post("/dashboard/login", data=_form(owner), headers={"origin": stack.info.edge_url})
        assert same_site.status_code == 303
        assert SESSION_COOKIE in same_site.cookies


async def test_sign_out_needs_the_csrf_token(page: Page, stack: Any) -> None:
    token = next(c["value"] for c in await page.context.cookies() if c["name"] == SESSION_COOKIE)
    async with httpx.AsyncClient(base_url=stack.info.edge_url, cookies={SESSION_COOKIE: token}, timeout=30) as http:
        forged = await http.post("/dashboard/logout", data={"csrf_token": "forged"})
        assert forged.status_code == 403
        bare = await http.post("/dashboard/logout")
        assert bare.status_code == 403
    await visit(page, "/dashboard")  # the session survived both
    assert _path(page) == "/dashboard"


async def test_the_cookie_is_secure_except_over_plain_http_to_this_machine(owner: Owner, stack: Any) -> None:
    def flags(answer: httpx.Response) -> str:
        return next(v for k, v in answer.headers.multi_items() if k == "set-cookie" and v.startswith(SESSION_COOKIE))

    async with httpx.AsyncClient(base_url=stack.info.edge_url, timeout=30) as http:
        local = await http.post("/dashboard/login", data=_form(owner), headers={"origin": stack.info.edge_url})
        assert "HttpOnly" in flags(local) and "SameSite=lax" in flags(local) and "Secure" not in flags(local)
        # The same plain-HTTP port reached by a name other than this machine's: Secure.
        port = urlsplit(stack.info.edge_url).port
        remote = {"host": f"orqen.example.com:{port}", "origin": f"http://orqen.example.com:{port}"}
        elsewhere = await http.post("/dashboard/login", data=_form(owner), headers=remote)
        assert elsewhere.status_code == 303
        assert "Secure" in flags(elsewhere)
    trusting_the_dev_cert = ssl.create_default_context(cafile=str(stack.info.cert_path))
    async with httpx.AsyncClient(base_url=stack.info.tls_url, verify=trusting_the_dev_cert, timeout=30) as https:
        tls = await https.post("/dashboard/login", data=_form(owner), headers={"origin": stack.info.tls_url})
        assert "Secure" in flags(tls) and "HttpOnly" in flags(tls)


async def test_every_dashboard_answer_carries_the_security_headers(page: Page, stack: Any) -> None:
    token = next(c["value"] for c in await page.context.cookies() if c["name"] == SESSION_COOKIE)
    async with httpx.AsyncClient(base_url=stack.info.edge_url, cookies={SESSION_COOKIE: token}, timeout=30) as http:
        for path in (
            "/",
            "/dashboard",
            "/dashboard/login",
            "/dashboard/static/dashboard.js",
            "/dashboard/no-such-page",
        ):
            answer = await http.get(path)
            assert answer.headers["content-security-policy"] == CSP, path
            assert answer.headers["x-frame-options"] == "DENY", path
            assert answer.headers["x-content-type-options"] == "nosniff", path
            assert answer.headers["referrer-policy"] == "same-origin", path
        missing = await http.get("/dashboard/no-such-page")
        assert missing.status_code == 404 and "text/html" in missing.headers["content-type"]
        assert "<script>" not in (await http.get("/dashboard")).text.replace('<script src="', "")


async def test_an_unknown_dashboard_page_is_an_html_404_with_the_nav(page: Page) -> None:
    answer = await page.goto("/dashboard/no-such-page")
    assert answer is not None and answer.status == 404
    assert "Not found" in await page.inner_text("main")
    problems(page)


async def test_htmx_requests_carry_the_csrf_token_and_htmx_adds_no_style(page: Page, stack: Any) -> None:
    # No <style> element (htmx's indicator styles are off: the CSP allows no inline style).
    assert await page.evaluate("document.querySelectorAll('style').length") == 0
    csrf = await page.evaluate("JSON.parse(document.body.getAttribute('hx-headers'))['X-CSRF-Token']")
    async with page.expect_request("**/dashboard/logout") as sent:
        await page.evaluate("htmx.ajax('POST', '/dashboard/logout', {source: document.body, swap: 'none'})")
    assert (await sent.value).headers["x-csrf-token"] == csrf
    await page.wait_for_load_state("networkidle")
    await page.goto("/dashboard")  # that htmx sign-out was accepted: the session is gone
    assert _path(page) == "/dashboard/login"
