"""Team and billing in Chromium against the whole stack: invite, sign up through the link, sign in;
remove an owner (never the last); a password change ends the other sessions; upgrade through the
Stripe fake's Checkout page and come back synced; another account's owner ids answer 404.

(This stack runs billing on the Stripe fake; Billing in local mode is shown in Chromium by
test_dashboard_local_mode.py, on a stack of its own.)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from playwright.async_api import Browser, Page

from accounts import remember_secret
from dashboard_browser import Owner, assert_charts_drawn, assert_fits_375, problems, screenshot, sign_in, visit, watch
from orqen.v1 import accounting_pb2, accounting_pb2_grpc
from orqen_common.grpc_client import open_channel

NEW_PASSWORD = remember_secret("owner password", "another long passphrase 42")


def _path(page: Page) -> str:
    parts = urlsplit(page.url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


async def _second_browser(browser: Browser, stack: Any) -> Page:
    """Another person's browser (own cookies)."""
    context = await browser.new_context(base_url=stack.info.edge_url, viewport={"width": 1280, "height": 800})
    return watch(await context.new_page(), stack.info.edge_url)


async def _owner_ids(stack: Any, account_id: str) -> dict[str, str]:
    env = stack.service_env
    async with open_channel(env["ORQEN_ACCOUNTING_ADDR"], env["ORQEN_INTERNAL_TOKEN"]) as channel:
        listed = await accounting_pb2_grpc.AccountingStub(channel).ListOwners(
            accounting_pb2.AccountRef(account_id=account_id), timeout=10
        )
    return {o.email: o.id for o in listed.owners}


async def test_an_owner_invites_another_who_signs_up_and_signs_in(
    page: Page, owner: Owner, browser: Browser, stack: Any
) -> None:
    await visit(page, "/dashboard/team")
    assert owner.email in await page.inner_text("#owners")
    assert "the last owner stays" in await page.inner_text("#owners")
    await page.click("button:has-text('Create a sign-up link')")
    url = (await page.inner_text("#invite-url")).strip()
    assert urlsplit(url).path.startswith("/dashboard/signup/inv-")
    assert problems(page) == []
    await assert_fits_375(page)
    await screenshot(page, "team")

    newcomer = await _second_browser(browser, stack)
    try:
        await visit(newcomer, urlsplit(url).path)
        await assert_fits_375(newcomer)
        await screenshot(newcomer, "signup")
        await newcomer.fill("input[name=email]", f"second-{owner.email}")
        await newcomer.fill("input[name=password]", NEW_PASSWORD)
        await newcomer.fill("input[name=confirm_password]", NEW_PASSWORD)
        await newcomer.click("button:has-text('Sign up')")
        await newcomer.wait_for_selector("text=is now an owner of")
        # The link works once.
        await newcomer.goto(urlsplit(url).path)
        await newcomer.fill("input[name=email]", f"third-{owner.email}")
        await newcomer.fill("input[name=password]", NEW_PASSWORD)
        await newcomer.fill("input[name=confirm_password]", NEW_PASSWORD)
        await newcomer.click("button:has-text('Sign up')")
        assert "already used or expired" in await newcomer.inner_text(".error")
        second = Owner(owner.account_id, owner.account_name, f"second-{owner.email}", NEW_PASSWORD, owner.api_key)
        await sign_in(newcomer, second)
        assert _path(newcomer) == "/dashboard" and owner.account_name in await newcomer.inner_text("header")
    finally:
        await newcomer.context.close()

    await visit(page, "/dashboard/team")
    assert f"second-{owner.email}" in await page.inner_text("#owners")


async def test_removing_an_owner_signs_it_out_but_the_last_owner_stays(
    page: Page, owner: Owner, new_owner: Callable[[], Awaitable[Owner]], browser: Browser, stack: Any
) -> None:
    stranger = await new_owner()
    # A second owner of the same account, through the account's own invitation.
    await visit(page, "/dashboard/team")
    await page.click("button:has-text('Create a sign-up link')")
    url = (await page.inner_text("#invite-url")).strip()
    colleague = await _second_browser(browser, stack)
    try:
        await colleague.goto(urlsplit(url).path)
        await colleague.fill("input[name=email]", f"colleague-{owner.email}")
        await colleague.fill("input[name=password]", NEW_PASSWORD)
        await colleague.fill("input[name=confirm_password]", NEW_PASSWORD)
        await colleague.click("button:has-text('Sign up')")
        await colleague.wait_for_selector("text=is now an owner of")
        await sign_in(colleague, Owner(owner.account_id, "", f"colleague-{owner.email}", NEW_PASSWORD, ""))
        assert _path(colleague) == "/dashboard"

        # Another account's owner id, or no owner at all: the 404 page, nothing removed.
        stranger_id = (await _owner_ids(stack, stranger.account_id))[stranger.email]
        for unknown in (stranger_id, "00000000-0000-0000-0000-000000000000", "not-an-id"):
            answer = await page.request.post(
                f"/dashboard/team/owners/{unknown}/remove",
                form={"csrf_token": await page.get_attribute("input[name=csrf_token]", "value") or ""},
                max_redirects=0,
            )
            assert answer.status == 404, (unknown, answer.status)
        assert stranger.email in await _owner_ids(stack, stranger.account_id)

        await visit(page, "/dashboard/team")
        page.once("dialog", lambda dialog: dialog.accept())
        async with page.expect_navigation():
            await page.click(f"tr:has-text('colleague-{owner.email}') button:has-text('Remove')")
        assert f"colleague-{owner.email} was removed" in await page.inner_text("main")
        # The colleague's session ended with them.
        await colleague.goto("/dashboard")
        assert _path(colleague).startswith("/dashboard/login")
    finally:
        await colleague.context.close()

    # The last owner: no Remove button, and a forged removal is refused by accounting.
    assert "the last owner stays" in await page.inner_text("#owners")
    own_id = (await _owner_ids(stack, owner.account_id))[owner.email]
    refused = await page.request.post(
        f"/dashboard/team/owners/{own_id}/remove",
        form={"csrf_token": await page.get_attribute("input[name=csrf_token]", "value") or ""},
        max_redirects=0,
    )
    assert refused.status == 400 and "last owner" in await refused.text()
    assert list(await _owner_ids(stack, owner.account_id)) == [owner.email]


async def test_changing_the_password_ends_the_other_sessions(
    page: Page, owner: Owner, browser: Browser, stack: Any
) -> None:
    laptop = await _second_browser(browser, stack)
    try:
        await sign_in(laptop, owner)
        assert _path(laptop) == "/dashboard"

        await visit(page, "/dashboard/team")
        await page.fill("input[name=current_password]", "not my password at all")
        await page.fill("input[name=new_password]", NEW_PASSWORD)
        await page.fill("input[name=confirm_password]", NEW_PASSWORD)
        async with page.expect_navigation():
            await page.click("button:has-text('Change password')")
        assert "current password is wrong" in await page.inner_text("main")
        problems(page)  # the refusal answered 400 on purpose

        await page.fill("input[name=current_password]", owner.password)
        await page.fill("input[name=new_password]", NEW_PASSWORD)
        await page.fill("input[name=confirm_password]", NEW_PASSWORD)
        async with page.expect_navigation():
            await page.click("button:has-text('Change password')")
        assert "other sessions were signed out" in await page.inner_text("main")
        # This browser stays signed in, the laptop's session ended.
        await visit(page, "/dashboard/team")
        await laptop.goto("/dashboard/billing")
        assert _path(laptop) == "/dashboard/login?next=/dashboard/billing"
        await sign_in(laptop, Owner(owner.account_id, "", owner.email, NEW_PASSWORD, ""), "/dashboard/billing")
        assert _path(laptop) == "/dashboard/billing"
    finally:
        await laptop.context.close()


async def test_upgrade_through_stripe_checkout_and_come_back_synced(page: Page, stack: Any) -> None:
    await visit(page, "/dashboard/billing")
    assert (await page.inner_text("#tier")).strip() == "Free"
    await assert_charts_drawn(page)
    await assert_fits_375(page)
    await screenshot(page, "billing")

    async with page.expect_navigation(url=f"{stack.stripe.url}/c/pay/**"):
        await page.click("button:has-text('Upgrade to Pro')")
    # Stripe's hosted page (the fake's): paying sends the browser back to the dashboard's billing page.
    async with page.expect_navigation(url="**/dashboard/billing?checkout_session_id=cs_*"):
        await page.click("#pay")
    assert "now on the Pro plan" in await page.inner_text("main")
    assert (await page.inner_text("#tier")).strip() == "Pro"
    foreign = [p for p in problems(page) if "another origin" not in p]  # Stripe's page is another origin
    assert foreign == []
    await screenshot(page, "billing-pro")

    # Manage: the customer portal, and back.
    async with page.expect_navigation(url=f"{stack.stripe.url}/p/session/**"):
        await page.click("button:has-text('Manage billing')")
    async with page.expect_navigation(url="**/dashboard/billing"):
        await page.click("#back")
    assert (await page.inner_text("#tier")).strip() == "Pro"
    problems(page)


async def test_a_checkout_session_of_another_account_is_not_synced(
    page: Page, new_owner: Callable[[], Awaitable[Owner]], browser: Browser, stack: Any
) -> None:
    other = await new_owner()
    elsewhere = await _second_browser(browser, stack)
    try:
        await sign_in(elsewhere, other)
        await elsewhere.goto("/dashboard/billing")
        async with elsewhere.expect_navigation(url=f"{stack.stripe.url}/c/pay/**"):
            await elsewhere.click("button:has-text('Upgrade to Pro')")
        theirs = urlsplit(elsewhere.url).path.rsplit("/", 1)[1]
    finally:
        await elsewhere.context.close()
    await page.goto(f"/dashboard/billing?checkout_session_id={theirs}")
    assert "No such Checkout session" in await page.inner_text(".error")
    assert (await page.inner_text("#tier")).strip() == "Free"
    problems(page)
