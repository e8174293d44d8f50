"""The dashboard in a real browser, helpers every dashboard test uses (its fixtures live in
tests-e2e/tests/dashboard/conftest.py, which re-exports these):
- `await visit(page, path)`: open a page; asserts it answered < 400 with no console error, no failed
  request and no request to another origin.
- `await assert_charts_drawn(page)`: every canvas[data-chart] has non-blank pixels.
- `await assert_fits_375(page)`: no horizontal overflow in a 375 px wide window.
- `await screenshot(page, name)`: tests-e2e/artifacts/dashboard/<name>.png at 1280x800.
- `await sign_in(page, owner)`: the sign-in form, filled and sent.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from weakref import WeakKeyDictionary

from playwright.async_api import ConsoleMessage, Page, Request

CHROMIUM = os.environ.get("ORQEN_TEST_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "dashboard"
WIDE = {"width": 1280, "height": 800}
NARROW = {"width": 375, "height": 800}


@dataclass(frozen=True)
class Owner:
    """A fresh account, one owner who signs in to it, and an API key to send it traffic."""

    account_id: str
    account_name: str
    email: str
    password: str
    api_key: str


@dataclass
class _Watch:
    """What went wrong on a page since the last visit."""

    origin: str
    problems: list[str] = field(default_factory=list)
    answered: list[Request] = field(default_factory=list)

    def console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.problems.append(f"console error: {message.text} ({message.location.get('url', '')})")

    def request(self, request: Request) -> None:
        parts = urlsplit(request.url)
        if parts.scheme in ("http", "https") and f"{parts.scheme}://{parts.netloc}" != self.origin:
            self.problems.append(f"request to another origin: {request.url}")

    def failed(self, request: Request) -> None:
        # Chromium fetches the favicon on its own, after the page, and cancels that fetch whenever
        # the tab moves on: an aborted favicon says nothing about the page.
        if request.failure == "net::ERR_ABORTED" and urlsplit(request.url).path.endswith("/favicon.svg"):
            return
        # htmx follows an HX-Redirect from the request's load event; Chromium can tell DevTools that
        # the navigation cut the request before it tells it the body (here empty) had arrived. A
        # request that was answered and then aborted had its answer.
        if request.failure == "net::ERR_ABORTED" and any(request is seen for seen in self.answered):
            return
        self.problems.append(f"failed request: {request.method} {request.url} ({request.failure})")

    def response(self, response: Any) -> None:
        self.answered = [*self.answered[-63:], response.request]
        if response.status >= 400:
            self.problems.append(f"HTTP {response.status}: {response.request.method} {response.url}")


_watches: WeakKeyDictionary[Page, _Watch] = WeakKeyDictionary()


def watch(page: Page, origin: str) -> Page:
    """Record console errors, failed and foreign requests of `page` (visit() asserts there are none)."""
    seen = _Watch(origin)
    page.on("console", seen.console)
    page.on("pageerror", lambda err: seen.problems.append(f"page error: {err}"))
    page.on("request", seen.request)
    page.on("requestfailed", seen.failed)
    page.on("response", seen.response)
    _watches[page] = seen
    return page


def problems(page: Page) -> list[str]:
    """What went wrong on `page` since the last visit (and forget it)."""
    seen = _watches[page]
    found, seen.problems = seen.problems, []
    return found


async def visit(page: Page, path: str) -> None:
    """Open `path` and wait for the network to settle: it must load clean."""
    problems(page)
    response = await page.goto(path, wait_until="networkidle")
    assert response is not None, f"no answer for {path}"
    assert response.status < 400, f"{path} answered {response.status}"
    found = problems(page)
    assert not found, f"{path} did not load clean:\n" + "\n".join(found)


async def assert_charts_drawn(page: Page, at_least: int = 1) -> None:
    """Every canvas[data-chart] on the page has been drawn (some pixel is not transparent)."""
    drawn: list[bool] = await page.eval_on_selector_all(
        "canvas[data-chart]",
        """canvases => canvases.map(canvas => {
            if (!canvas.width || !canvas.height) return false;
            const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
            for (let i = 3; i < pixels.length; i += 4) if (pixels[i] !== 0) return true;
            return false;
        })""",
    )
    assert len(drawn) >= at_least, f"expected at least {at_least} chart(s), found {len(drawn)}"
    assert all(drawn), f"blank charts: {[i for i, ok in enumerate(drawn) if not ok]} of {len(drawn)}"


async def assert_fits_375(page: Page) -> None:
    """In a 375 px wide window nothing makes the page scroll sideways (tables scroll inside their box)."""
    await page.set_viewport_size(NARROW)
    try:
        await page.wait_for_timeout(100)  # let charts and layout follow the resize
        overflow: dict[str, Any] = await page.evaluate(
            """() => {
                const width = document.documentElement.clientWidth;
                const scroll = Math.max(document.documentElement.scrollWidth, document.body.scrollWidth);
                const wide = [...document.querySelectorAll("body *")]
                    .filter(el => el.getBoundingClientRect().right > width + 1)
                    .filter(el => !el.parentElement.closest(".table-wrap, pre"))
                    .slice(0, 5)
                    .map(el => el.tagName.toLowerCase() + (el.className ? "." + el.className : ""));
                return {width, scroll, wide};
            }"""
        )
        assert overflow["scroll"] <= overflow["width"], f"wider than 375 px: {overflow}"
    finally:
        await page.set_viewport_size(WIDE)


async def screenshot(page: Page, name: str, *, narrow: bool = False) -> Path:
    """A 1280x800 PNG of the page for the README and reviewers: tests-e2e/artifacts/dashboard/<name>.png;
    `narrow`: the whole page at 375 px wide (<name>-375.png), to look at the phone layout."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / (f"{name}-375.png" if narrow else f"{name}.png")
    await page.set_viewport_size(NARROW if narrow else WIDE)
    try:
        await page.wait_for_timeout(100)  # charts follow the resize
        await page.screenshot(path=str(path), full_page=narrow)
    finally:
        await page.set_viewport_size(WIDE)
    return path


async def sign_in(page: Page, owner: Owner, next_path: str = "") -> None:
    """Sign in through the form, as a person would."""
    await page.goto("/dashboard/login" + (f"?next={next_path}" if next_path else ""))
    await page.fill("input[name=email]", owner.email)
    await page.fill("input[name=password]", owner.password)
    async with page.expect_navigation():
        await page.click("button[type=submit]")
