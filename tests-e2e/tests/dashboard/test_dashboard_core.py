"""Sign-in and sign-out, the session guard, the security headers, the Overview and the local /schema,
in Chromium against the whole stack."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

import httpx
from playwright.async_api import Page

from dashboard_browser import (
    Owner,
    assert_charts_drawn,
    assert_fits_375,
    problems,
    screenshot,
    sign_in,
    visit,
)

SESSION_COOKIE = "orqen_session"


def _path(page: Page) -> str:
    parts = urlsplit(page.url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


async def test_sign_in_lands_on_the_overview_and_sign_out_ends_the_session(anon_page: Page, owner: Owner) -> None:
    await visit(anon_page, "/dashboard/login")
    await screenshot(anon_page, "sign-in")
    await sign_in(anon_page, owner)
    assert _path(anon_page) == "/dashboard"
    assert owner.account_name in await anon_page.inner_text("header")
    cookie = next(c for c in await anon_page.context.cookies() if c["name"] == SESSION_COOKIE)
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"

    async with anon_page.expect_navigation():
        await anon_page.click("header button:has-text('Sign out')")
    assert _path(anon_page) == "/dashboard/login"
    assert not [c for c in await anon_page.context.cookies() if c["name"] == SESSION_COOKIE]
    # The old cookie no longer opens anything.
    await anon_page.context.add_cookies([{**cookie}])
    await anon_page.goto("/dashboard")
    assert _path(anon_page) == "/dashboard/login"


async def test_the_overview_shows_the_account_apis_figures_with_its_charts_drawn(
    page: Page, owner: Owner, stack: Any
) -> None:
    async with httpx.AsyncClient(
        base_url=stack.info.edge_url, headers={"authorization": f"Bearer {owner.api_key}"}, timeout=30
    ) as http:
        for _ in range(3):
            answer = await http.post(
                "/v1/chat/completions",
                json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]},
            )
            assert answer.status_code == 200, answer.text
        for _ in range(100):  # until accounting has the three requests
            summary = (await http.get("/v1/usage/summary")).json()
            if summary["requests"] == 3:
                break
            await asyncio.sleep(0.1)
        assert summary["requests"] == 3, summary
    await visit(page, "/dashboard")
    tiles = {
        await tile.locator(".label").inner_text(): await tile.locator(".value").inner_text()
        for tile in await page.locator(".stat").all()
    }
    assert tiles["Requests"] == "3"
    assert tiles["Tokens in / out"] == f"{summary['input_tokens']:,} / {summary['output_tokens']:,}"
    await assert_charts_drawn(page, at_least=4)
    await assert_fits_375(page)
    await screenshot(page, "overview")
    await screenshot(page, "overview", narrow=True)


async def test_root_opens_the_dashboard(anon_page: Page) -> None:
    await anon_page.goto("/")
    assert _path(anon_page) == "/dashboard/login"
    assert problems(anon_page) == []


async def test_the_api_reference_loads_every_asset_from_this_origin(anon_page: Page) -> None:
    for path in ("/schema", "/schema/swagger"):
        await visit(anon_page, path)
        # Swagger UI renders the whole document in the browser: seconds on a busy machine.
        await anon_page.wait_for_selector(".swagger-ui .opblock", timeout=90_000)
        assert "/v1/chat/completions" in await anon_page.inner_text(".swagger-ui")
        assert problems(anon_page) == []
    await screenshot(anon_page, "schema")
