"""The Requests and Sessions pages in Chromium, over real traffic sent through the SDKs: a routed
tool call, an Anthropic call, a fallback with several attempts, a failure, sessions (one named like
a script), and another account whose ids must answer 404."""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import anthropic
import httpx
import openai
import pytest
from playwright.async_api import Dialog, Page, expect

from accounts import new_account_key
from dashboard_browser import Owner, assert_charts_drawn, assert_fits_375, problems, screenshot, visit
from toolbox import TOOLBOX

HOSTILE = "<script>alert(1)</script>"
TRIP = "trip-planning"


def index_toolbox(edge_url: str, key: str) -> None:
    """Send the toolbox until the optimizer routes it: the first sight of tools has them indexed in the
    background. Done with another account's key so the account under test logs only `send_traffic`'s
    requests (tool vectors are cached by content, so every account's requests are routed after)."""
    oa = openai.OpenAI(base_url=edge_url + "/v1", api_key=key, max_retries=0)
    ask = [{"role": "user", "content": "What does AAPL trade at?"}]
    for _ in range(120):
        raw = oa.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=ask, tools=TOOLBOX)
        if raw.headers.get("x-orqen-routing", "passthrough") != "passthrough":
            return
        time.sleep(0.5)
    raise AssertionError("the toolbox was never routed")


def send_traffic(edge_url: str, key: str) -> dict[str, str]:
    """The account's traffic, through the SDKs as an application sends it; the request ids by role."""
    oa = openai.OpenAI(base_url=edge_url + "/v1", api_key=key, max_retries=0)
    trip = {"X-Orqen-Session-Id": TRIP}
    ask = [{"role": "user", "content": 'What does AAPL trade at? call get_stock_price {"query": "AAPL"}'}]
    # `index_toolbox` had the tools indexed, so this first request is routed.
    raw = oa.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=ask, tools=TOOLBOX, extra_headers=trip
    )
    assert raw.headers.get("x-orqen-routing", "passthrough") != "passthrough"
    routed = raw.headers["x-request-id"]
    claude = anthropic.Anthropic(base_url=edge_url, api_key=key, max_retries=0)
    answered = claude.messages.with_raw_response.create(
        model="claude-sonnet-4-6",
        max_tokens=50,
        messages=[{"role": "user", "content": "and in euros?"}],
        extra_headers=trip,
    )
    # Before any fallback chain: a failure that stays a failure.
    with pytest.raises(openai.RateLimitError) as refused:
        oa.chat.completions.create(model="fake-429", messages=[{"role": "user", "content": "x"}])
    failed = refused.value.response.headers["x-request-id"]
    # The requested model fails at the provider: retried, then the fallback chain answers.
    httpx.put(
        edge_url + "/v1/account/routing/preferences",
        json={"fallback_models": ["claude-sonnet-4-6"]},
        headers={"authorization": f"Bearer {key}"},
    ).raise_for_status()
    fallback = oa.chat.completions.with_raw_response.create(
        model="gpt-fake-500", messages=[{"role": "user", "content": "book it"}], extra_headers=trip
    )
    # Two steps and a file named: the trace shows the steps and the keywords the file bridge added.
    steps = oa.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Get the AAPL stock price, then save it in /tmp/notes/aapl.md"}],
        tools=TOOLBOX,
    )
    hostile = oa.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"X-Orqen-Session-Id": HOSTILE},
    )
    return {
        "routed": routed,
        "anthropic": answered.headers["x-request-id"],
        "fallback": fallback.headers["x-request-id"],
        "hostile": hostile.headers["x-request-id"],
        "failed": failed,
        "steps": steps.headers["x-request-id"],
    }


async def traffic(stack: Any, owner: Owner) -> dict[str, str]:
    """`send_traffic` for `owner`'s account, once the request log holds all of it."""
    warm_key = await new_account_key(stack, f"toolbox-{secrets.token_hex(4)}")
    await asyncio.to_thread(index_toolbox, stack.info.edge_url, warm_key)
    sent = await asyncio.to_thread(send_traffic, stack.info.edge_url, owner.api_key)
    async with httpx.AsyncClient(
        base_url=stack.info.edge_url, headers={"authorization": f"Bearer {owner.api_key}"}, timeout=30
    ) as http:
        for _ in range(300):
            logged = {r["request_id"] for r in (await http.get("/v1/account/requests")).json()["data"]}
            if logged >= set(sent.values()):
                return sent
            await asyncio.sleep(0.1)
    raise AssertionError("the requests never all reached the request log")


def _query(page: Page) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.url).query)


async def _rows(page: Page) -> list[str]:
    return await page.locator("table.requests tbody tr").all_inner_texts()


async def test_the_request_log_filters_pages_and_refreshes_live(page: Page, owner: Owner, stack: Any) -> None:
    sent = await traffic(stack, owner)
    await visit(page, "/dashboard/requests")
    assert len(await _rows(page)) == len(sent)
    await assert_fits_375(page)
    await screenshot(page, "requests")

    # The filters are a GET form: the filtered view is a URL to bookmark.
    await page.select_option("select[name=ingress]", "anthropic")
    async with page.expect_navigation():
        await page.click("form.filters button[type=submit]")
    assert _query(page) == {"ingress": ["anthropic"]}
    rows = await _rows(page)
    assert len(rows) == 1 and "claude-sonnet-4-6" in rows[0]
    await visit(page, f"/dashboard/requests?session_id={TRIP}&status=success")
    assert len(await _rows(page)) == 3
    assert await page.input_value("input[name=session_id]") == TRIP
    await visit(page, "/dashboard/requests?status=error")
    rows = await _rows(page)
    assert len(rows) == 1 and "429" in rows[0]
    await visit(page, "/dashboard/requests?model=gpt-fake-500&since=2000-01-01T00:00")
    assert len(await _rows(page)) == 1
    await visit(page, "/dashboard/requests?until=2000-01-01T00:00")
    assert "No request matches" in (await _rows(page))[0]

    # Keyset paging, two at a time, keeps the filters and walks the whole log once.
    await visit(page, "/dashboard/requests?limit=2&ingress=openai")
    seen: list[str] = []
    while True:
        seen += await page.locator("table.requests tbody td:first-child a").evaluate_all(
            "links => links.map(a => a.getAttribute('href'))"
        )
        older = page.locator("a[rel=next]")
        if not await older.count():
            break
        async with page.expect_navigation():
            await older.click()
        assert _query(page)["ingress"] == ["openai"] and _query(page)["cursor"]
    assert len(seen) == len(set(seen)) == len(sent) - 1

    # A filter the log cannot read comes back with the reason, not an error page.
    answer = await page.goto("/dashboard/requests?since=yesterday")
    assert answer is not None and answer.status == 400
    assert "since" in await page.inner_text("form.filters .error")
    problems(page)

    # The first page refreshes itself: a new request shows up without a reload.
    await visit(page, "/dashboard/requests")
    client = openai.OpenAI(base_url=stack.info.edge_url + "/v1", api_key=owner.api_key, max_retries=0)
    await asyncio.to_thread(
        client.chat.completions.create, model="gpt-4o-mini", messages=[{"role": "user", "content": "one more"}]
    )
    await expect(page.locator("table.requests tbody tr")).to_have_count(len(sent) + 1, timeout=30_000)
    assert problems(page) == []


async def test_a_request_shows_its_attempts_headers_and_routing_trace(page: Page, owner: Owner, stack: Any) -> None:
    sent = await traffic(stack, owner)
    await visit(page, "/dashboard/requests")
    # Open the routed request from the log, as an owner would.
    async with page.expect_navigation():
        await page.click(f"a[href='/dashboard/requests/{sent['routed']}']")
    await page.wait_for_load_state("networkidle")
    assert problems(page) == []
    await assert_charts_drawn(page, at_least=1)
    trace = page.locator("section.trace")
    assert "What does AAPL trade at?" in await trace.locator(".facts").inner_text()
    candidates = await trace.locator("table.candidates tbody tr").all_inner_texts()
    assert len(candidates) >= 2 and "get_stock_price" in candidates[0]
    called = await trace.locator("table.candidates tr.called").all_inner_texts()
    assert len(called) == 1 and "get_stock_price" in called[0]
    headers = await page.locator("table.headers").inner_text()
    assert "x-orqen-tools-input\t12" in headers and "x-orqen-routing" in headers
    fields = await page.locator(".field-groups").inner_text()
    assert sent["routed"] in fields and "get_stock_price" in fields
    await assert_fits_375(page)
    await screenshot(page, "request-trace")

    # A multi-step ask: its steps with the tools each retrieved, the keywords a bridge added, and the
    # trace's forwarded rows first.
    await visit(page, f"/dashboard/requests/{sent['steps']}")
    steps = await trace.locator("ol.steps li").all_inner_texts()
    assert len(steps) == 2 and "AAPL stock price" in steps[0] and "aapl.md" in steps[1]
    assert "get_stock_price" in steps[0]
    assert "file, write" in await trace.locator(".facts").inner_text()
    forwarded = await trace.locator("table.candidates tbody td:nth-child(4)").all_inner_texts()
    assert "yes" in forwarded and forwarded == sorted(forwarded, key=lambda f: f != "yes")
    await assert_fits_375(page)
    await screenshot(page, "request-steps")

    await visit(page, f"/dashboard/requests/{sent['fallback']}")
    attempts = await page.locator("table.attempts tbody tr").all_inner_texts()
    assert len(attempts) >= 2
    assert "gpt-fake-500" in attempts[0] and "500" in attempts[0] and "requested" in attempts[0]
    assert "claude-sonnet-4-6" in attempts[-1] and "200" in attempts[-1] and "fallback" in attempts[-1]
    assert "No routing decision" in await page.inner_text("main")
    await assert_fits_375(page)
    await screenshot(page, "request-fallback")


async def test_sessions_list_and_a_sessions_timeline(page: Page, owner: Owner, stack: Any) -> None:
    sent = await traffic(stack, owner)
    await visit(page, "/dashboard/sessions")
    rows = await page.locator("table.sessions tbody tr").all_inner_texts()
    assert len(rows) == 2
    trip = next(r for r in rows if r.startswith(TRIP))
    assert "\t3" in trip
    await assert_fits_375(page)
    await screenshot(page, "sessions")

    async with page.expect_navigation():
        await page.click(f"table.sessions a:text-is('{TRIP}')")
    await page.wait_for_load_state("networkidle")
    assert problems(page) == []
    assert await page.inner_text("h1") == TRIP
    await assert_charts_drawn(page, at_least=1)
    steps = page.locator("ol.timeline a.step-link")
    hrefs = await steps.evaluate_all("links => links.map(a => a.getAttribute('href'))")
    # Oldest first: the routed call, the Anthropic one, the fallback.
    assert hrefs == [f"/dashboard/requests/{sent[k]}" for k in ("routed", "anthropic", "fallback")]
    await assert_fits_375(page)
    await screenshot(page, "session")
    async with page.expect_navigation():
        await steps.nth(2).click()
    assert urlsplit(page.url).path == f"/dashboard/requests/{sent['fallback']}"

    # Keyset paging: one session a page, most recently active first; a timeline two requests at a time.
    await visit(page, "/dashboard/sessions?limit=1")
    assert await page.locator("table.sessions tbody td:first-child").all_inner_texts() == [HOSTILE]
    async with page.expect_navigation():
        await page.click("a[rel=next]")
    assert await page.locator("table.sessions tbody td:first-child").all_inner_texts() == [TRIP]
    assert await page.locator("a[rel=next]").count() == 0
    await visit(page, f"/dashboard/sessions/{TRIP}?limit=2")
    latest = await steps.evaluate_all("links => links.map(a => a.getAttribute('href'))")
    assert latest == [f"/dashboard/requests/{sent[k]}" for k in ("anthropic", "fallback")]
    async with page.expect_navigation():
        await page.click("a[rel=next]")
    earlier = await steps.evaluate_all("links => links.map(a => a.getAttribute('href'))")
    assert earlier == [f"/dashboard/requests/{sent['routed']}"]
    assert _query(page)["limit"] == ["2"] and await page.locator("a[rel=next]").count() == 0


async def test_a_session_named_like_a_script_is_shown_as_text(page: Page, owner: Owner, stack: Any) -> None:
    sent = await traffic(stack, owner)
    dialogs: list[str] = []

    async def dismiss(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        await dialog.dismiss()

    page.on("dialog", dismiss)
    await visit(page, "/dashboard/sessions")
    link = page.locator("table.sessions a", has_text=HOSTILE)
    assert await link.inner_text() == HOSTILE
    async with page.expect_navigation():
        await link.click()
    await page.wait_for_load_state("networkidle")
    assert problems(page) == []
    assert urlsplit(page.url).path == "/dashboard/sessions/" + quote(HOSTILE, safe="")
    assert await page.inner_text("h1") == HOSTILE
    await visit(page, f"/dashboard/requests/{sent['hostile']}")
    await visit(page, "/dashboard/requests?session_id=" + quote(HOSTILE))
    assert HOSTILE in (await _rows(page))[0]
    assert dialogs == []
    assert await page.locator("script:not([src])").count() == 0


async def test_another_accounts_request_and_session_answer_404(
    page: Page, owner: Owner, new_owner: Any, stack: Any
) -> None:
    other = await new_owner()
    theirs = await traffic(stack, other)
    for path in (
        f"/dashboard/requests/{theirs['routed']}",
        f"/dashboard/sessions/{TRIP}",
        "/dashboard/requests/req_no_such_request",
        "/dashboard/sessions/no-such-session",
    ):
        answer = await page.goto(path)
        assert answer is not None and answer.status == 404, path
        assert "Not found" in await page.inner_text("h1")
        problems(page)
    # Their traffic is not in this account's log either.
    await visit(page, "/dashboard/requests")
    assert "No request matches" in (await _rows(page))[0]
