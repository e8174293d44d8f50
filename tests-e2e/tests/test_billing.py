"""Billing and dashboard sessions through the running stack: an owner made with `orqen owners create`
logs in over HTTPS, usage is metered from the request events, Checkout upgrades the account on the
Stripe fake, and the fake's own signed webhooks move the subscription. Postgres is checked as it goes."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import httpx
import pytest

from accounts import new_account_key, remember_secret
from fakes.stripe_api import SECRET_KEY
from harness import STRIPE_WEBHOOK_SECRET
from orqen_common.db import plain_postgres_url
from orqen_stack.home import Home

PASSWORD = remember_secret("owner password", "an e2e owner's long password")


def create_owner_with_the_cli(stack: Any, account: str, email: str) -> None:
    env = {**stack.service_env, "ORQEN_HOME": str(stack.home)}
    done = subprocess.run(
        [sys.executable, "-m", "orqen_stack.cli", "owners", "create", "--account", account, "--email", email,
         "--password-stdin"],
        input=f"{PASSWORD}\n", capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert email in done.stdout


async def api_key_of(stack: Any, account: str) -> str:
    return await new_account_key(stack, account)


async def eventually(check: Callable[[], Awaitable[bool]], what: str, seconds: float = 30) -> None:
    for _ in range(int(seconds * 10)):
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
async def db(stack: Any) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(plain_postgres_url(stack.service_env["ORQEN_DATABASE_URL"]))
    yield conn
    await conn.close()


async def test_an_owner_upgrades_to_pro_and_stripe_moves_the_subscription(stack: Any, db: asyncpg.Connection) -> None:
    account = f"billing-e2e-{id(stack)}"
    email = f"owner-{id(stack)}@example.com"
    create_owner_with_the_cli(stack, account, email)
    key = await api_key_of(stack, account)
    by_key = {"authorization": f"Bearer {key}"}
    # The dashboard is served over HTTPS: the session cookie is Secure.
    trusting_the_dev_cert = ssl.create_default_context(cafile=str(stack.info.cert_path))
    async with (
        httpx.AsyncClient(base_url=stack.info.tls_url, verify=trusting_the_dev_cert, timeout=30) as browser,
        httpx.AsyncClient(base_url=stack.info.edge_url, headers=by_key, timeout=30) as script,
    ):
        wrong = await browser.post("/v1/dashboard/login", json={"email": email, "password": "guess guess guess"})
        assert wrong.status_code == 401
        login = await browser.post("/v1/dashboard/login", json={"email": email, "password": PASSWORD})
        assert login.status_code == 200, login.text
        csrf = {"x-csrf-token": login.json()["csrf_token"]}
        account_id = login.json()["account"]["id"]

        async def status() -> dict[str, Any]:
            response = await browser.get("/v1/account/billing")
            assert response.status_code == 200, response.text
            return dict(response.json())

        before = await status()
        assert (before["tier"], before["requests"], before["stripe_enabled"]) == ("free", 0, True)

        # Usage is metered from the request events (billing's own consumer).
        chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}
        assert (await script.post("/v1/chat/completions", json=chat)).status_code == 200

        async def metered() -> bool:
            return (await status())["requests"] == 1

        await eventually(metered, "the request to be metered")
        assert (await status())["tokens"] > 0
        by_api = await script.get("/v1/account/billing")
        assert by_api.status_code == 200 and by_api.json()["requests"] == 1

        # Stripe endpoints: dashboard session only.
        refused = await script.post("/v1/billing/create-checkout")
        assert refused.status_code == 403 and "dashboard session" in refused.json()["error"]["message"]
        assert (await browser.post("/v1/billing/create-checkout")).status_code == 403  # no CSRF token
        checkout = await browser.post("/v1/billing/create-checkout", headers=csrf)
        assert checkout.status_code == 200, checkout.text
        session_id = checkout.json()["id"]
        customer = await db.fetchval(
            "SELECT stripe_customer_id FROM billing.subscriptions WHERE account_id = $1::uuid", account_id
        )
        assert customer.startswith("cus_")

        # The owner pays on Stripe's page; Stripe's signed webhooks alone upgrade the account.
        stack.stripe.complete_checkout(session_id)

        async def upgraded() -> bool:
            return (await status())["tier"] == "pro"

        await eventually(upgraded, "the subscription webhook")
        events = await db.fetch(
            "SELECT type FROM billing.stripe_events WHERE account_id = $1::uuid ORDER BY received_at", account_id
        )
        assert "customer.subscription.created" in [e["type"] for e in events]

        async def invoice_paid() -> bool:  # its own webhook, which may come after the subscription's
            status = await db.fetchval("SELECT status FROM billing.invoices WHERE account_id = $1::uuid", account_id)
            return bool(status == "paid")

        await eventually(invoice_paid, "the invoice webhook")

        synced = await browser.post("/v1/billing/sync-checkout", json={"session_id": session_id}, headers=csrf)
        assert synced.status_code == 200 and synced.json()["tier"] == "pro"
        portal = await browser.post("/v1/billing/customer-portal", headers=csrf)
        assert portal.status_code == 200 and portal.json()["url"].startswith(stack.stripe.url)

        # Cancelled in Stripe: its subscription.deleted webhook takes the account back to free.
        subscription = await db.fetchval(
            "SELECT stripe_subscription_id FROM billing.subscriptions WHERE account_id = $1::uuid", account_id
        )
        stack.stripe.delete(f"/v1/subscriptions/{subscription}")

        async def downgraded() -> bool:
            return (await status())["tier"] == "free"

        await eventually(downgraded, "the subscription.deleted webhook")
        row = await db.fetchrow(
            "SELECT tier, status FROM billing.subscriptions WHERE account_id = $1::uuid", account_id
        )
        assert (row["tier"], row["status"]) == ("free", "canceled")

        assert (await browser.post("/v1/dashboard/logout", headers=csrf)).status_code == 200
        assert (await browser.get("/v1/dashboard/session")).status_code == 401
        # The key still works for what keys may do.
        assert (await script.get("/v1/account/billing")).status_code == 200

    # Neither Stripe's secrets nor the owner's password ever reach a log line.
    logs = [path.read_text(errors="replace") for path in Home(stack.home).logs_dir.glob("*.log")]
    assert any("stripe event processed" in text for text in logs)
    for secret in (SECRET_KEY, STRIPE_WEBHOOK_SECRET, PASSWORD):
        assert not any(secret in text for text in logs)
