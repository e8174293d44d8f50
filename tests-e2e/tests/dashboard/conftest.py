"""The dashboard in a real browser: Debian's Chromium (/usr/bin/chromium) driven by Playwright's
async API, against the shared end-to-end stack (tests-e2e/tests/conftest.py).

Playwright never downloads a browser here: it launches the system Chromium by path. `make test-e2e`
installs the `chromium` package first when it is missing and the machine allows (root or sudo).

Fixtures and helpers for every dashboard test (async, like the rest of the e2e suite):
- `owner`: a fresh account with an owner (email, password) and an API key; `new_owner()` makes more.
- `page`: a 1280x800 page signed in as `owner`; `anon_page`: one not signed in.
- helpers (tests-e2e/dashboard_browser.py, imported from there): `visit`, `assert_charts_drawn`,
  `assert_fits_375`, `screenshot`, `sign_in`, `problems`.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from accounts import remember_secret
from dashboard_browser import CHROMIUM, WIDE, Owner, problems, sign_in, watch
from orqen.v1 import accounting_pb2, accounting_pb2_grpc
from orqen_common.grpc_client import open_channel


def _chromium() -> str:
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(
            f"Chromium is not installed at {CHROMIUM}: the dashboard's browser tests need Debian's `chromium` "
            "package. `make test-e2e` installs it when run as root or with sudo; otherwise run "
            "`sudo apt-get install -y chromium` (or point ORQEN_TEST_CHROMIUM at a Chromium binary).",
            pytrace=False,
        )
    return CHROMIUM


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    executable = _chromium()
    # Chromium's sandbox needs user namespaces a root process (CI containers) does not get.
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=executable, headless=True, args=args)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def new_owner(stack: Any) -> Callable[[], Awaitable[Owner]]:
    """Makes a fresh account with an owner and an API key, as `orqen owners create` and `orqen keys create` do."""
    env = stack.service_env

    async def make() -> Owner:
        name = f"dash-{secrets.token_hex(4)}"
        email, password = f"{name}@example.test", secrets.token_urlsafe(16)
        async with open_channel(env["ORQEN_ACCOUNTING_ADDR"], env["ORQEN_INTERNAL_TOKEN"]) as channel:
            stub = accounting_pb2_grpc.AccountingStub(channel)
            account = await stub.EnsureAccount(accounting_pb2.EnsureAccountRequest(name=name), timeout=10)
            await stub.CreateOwner(
                accounting_pb2.CreateOwnerRequest(account_id=account.id, email=email, password=password), timeout=10
            )
            key = await stub.CreateApiKey(
                accounting_pb2.CreateApiKeyRequest(account_id=account.id, name="e2e"), timeout=10
            )
        remember_secret("owner password", password)
        return Owner(account.id, name, email, password, remember_secret("API key", key.plaintext))

    return make


@pytest.fixture
async def owner(new_owner: Callable[[], Awaitable[Owner]]) -> Owner:
    return await new_owner()


@pytest.fixture
async def context(browser: Browser, stack: Any) -> AsyncIterator[BrowserContext]:
    """A fresh browser profile (no cookies) whose relative URLs go to the stack's edge."""
    opened = await browser.new_context(base_url=stack.info.edge_url, viewport=WIDE)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def anon_page(context: BrowserContext, stack: Any) -> Page:
    """A page of a browser that has not signed in."""
    return watch(await context.new_page(), stack.info.edge_url)


@pytest.fixture
async def page(anon_page: Page, owner: Owner) -> Page:
    """A page signed in as `owner`, on the Overview."""
    await sign_in(anon_page, owner)
    assert urlsplit(anon_page.url).path == "/dashboard", f"sign-in did not reach the Overview: {anon_page.url}"
    problems(anon_page)
    return anon_page
