"""The Team and Billing pages rendered by the real edge app over real accounting and billing (billing in
local mode here; the Stripe flows run in the browser: tests-e2e/tests/dashboard/test_dashboard_team_billing.py)."""

from collections.abc import Awaitable, Callable

from orqen_accounting.owners import OwnerRepository

from .edge_app import Edge


async def test_billing_in_local_mode_says_it_is_off_and_why(start_edge: Callable[..., Awaitable[Edge]]) -> None:
    edge = await start_edge()
    assert (await edge.login()).status_code == 200
    page = await edge.client.get("/dashboard/billing")
    assert page.status_code == 200, page.text
    assert "Billing is off" in page.text and "STRIPE_SECRET_KEY" in page.text
    assert "Upgrade to Pro" not in page.text and "Manage billing" not in page.text
    # Forged Upgrade: the page explains instead of failing.
    csrf = (await edge.client.get("/v1/dashboard/session")).json()["csrf_token"]
    forged = await edge.client.post("/dashboard/billing/checkout", data={"csrf_token": csrf})
    assert forged.status_code == 501 and "STRIPE_SECRET_KEY" in forged.text


async def test_the_team_page_shows_owner_emails_as_text(start_edge: Callable[..., Awaitable[Edge]]) -> None:
    edge = await start_edge()
    hostile = "<script>alert(1)</script>@evil.test"
    await OwnerRepository(edge.accounting_pool).create(edge.account_id, hostile, "correct horse battery staple")
    assert (await edge.login()).status_code == 200
    page = await edge.client.get("/dashboard/team")
    assert page.status_code == 200, page.text
    assert "<script>alert(1)</script>" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;@evil.test" in page.text
