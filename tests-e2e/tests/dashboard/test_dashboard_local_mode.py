"""The dashboard of a stack as `make up` starts it without a Stripe key (local billing mode), in
Chromium: the bootstrap owner signs in with the password the stack generated and printed, and the
Billing page says billing is off and why, offering no Upgrade or Manage button.

(The shared end-to-end stack runs billing on the Stripe fake, so this file starts a stack of its
own, as a new user's `make up` would.)
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page

from dashboard_browser import WIDE, Owner, assert_fits_375, screenshot, sign_in, visit, watch
from harness import stack_env
from orqen_stack.config import StackConfig, StackInfo
from orqen_stack.supervisor import Stack


@pytest.fixture(scope="module")
async def local_stack(upstreams: Any) -> AsyncIterator[StackInfo]:
    home = Path(tempfile.mkdtemp(prefix="orqen-e2e-local-"))
    running = Stack(StackConfig.from_env(stack_env(upstreams.urls, home, f"local{os.getpid()}")))
    try:
        yield await running.start()
    finally:
        await running.stop()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
async def bootstrap_page(browser: Browser, local_stack: StackInfo) -> AsyncIterator[Page]:
    context = await browser.new_context(base_url=local_stack.edge_url, viewport=WIDE)
    page = watch(await context.new_page(), local_stack.edge_url)
    owner = Owner("", "bootstrap", local_stack.owner_email, local_stack.owner_password, local_stack.api_key)
    await sign_in(page, owner, "/dashboard/billing")
    try:
        yield page
    finally:
        await context.close()


async def test_the_bootstrap_owner_signs_in_and_billing_says_it_is_off(bootstrap_page: Page) -> None:
    page = bootstrap_page
    assert page.url.endswith("/dashboard/billing"), page.url  # sign-in went on to the page asked for
    await visit(page, "/dashboard/billing")
    off = page.locator("#billing-off")
    await off.wait_for()
    text = await off.inner_text()
    assert "Billing is off" in text and "STRIPE_SECRET_KEY" in text, text
    assert await page.get_by_role("button", name="Upgrade to Pro").count() == 0
    assert await page.get_by_role("button", name="Manage billing").count() == 0
    # Usage is still metered and shown: the plan and its included tokens are on the page.
    assert (await page.locator("#tier").inner_text()).strip()
    await screenshot(page, "billing-local")
    await assert_fits_375(page)
