"""Dashboard sessions and the billing endpoints: the real edge app over real accounting and billing
gRPC servers (real Postgres, Redis), billing either in local mode or on the Stripe fake."""

import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson
import stripe
from redis.asyncio import Redis

from fakes.stripe_api import StripeFake
from harness import STRIPE_WEBHOOK_SECRET as WEBHOOK_SECRET
from orqen_stack.embedded import start_redis

from .edge_app import EMAIL, PASSWORD, Edge


async def test_login_sets_a_hardened_cookie_and_logout_ends_the_session(
    start_edge: Callable[..., Awaitable[Edge]], orqen_redis_db_url: str
) -> None:
    edge = await start_edge()
    wrong = await edge.login("not the password")
    assert wrong.status_code == 401 and wrong.json()["error"]["type"] == "authentication_error"
    assert "orqen_session" not in edge.client.cookies

    response = await edge.login()
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["account"] == {"id": edge.account_id, "name": "acme"} and body["owner"]["email"] == EMAIL
    cookie = response.headers["set-cookie"]
    for flag in ("HttpOnly", "Secure", "SameSite=lax", "Path=/"):
        assert flag.lower() in cookie.lower(), cookie
    # Redis holds the session under the token's hash, never the token itself.
    token = edge.client.cookies["orqen_session"]
    redis = Redis.from_url(orqen_redis_db_url)
    keys = [k.decode() for k in await redis.keys("orqen:dashboard-session:*")]
    assert len(keys) == 1 and token not in keys[0]
    assert 0 < await redis.ttl(keys[0]) <= 2 * 3600
    await redis.aclose()

    current = await edge.client.get("/v1/dashboard/session")
    assert current.status_code == 200 and current.json()["csrf_token"] == body["csrf_token"]

    assert (await edge.post("/v1/dashboard/logout")).status_code == 403  # no CSRF token
    out = await edge.post("/v1/dashboard/logout", csrf=body["csrf_token"])
    assert out.status_code == 200 and "max-age=0" in out.headers["set-cookie"].lower()
    # Even a client that kept the old cookie is logged out: the session is gone server-side.
    assert "orqen_session" not in edge.client.cookies
    gone = await edge.client.get("/v1/dashboard/session", headers={"cookie": f"orqen_session={token}"})
    assert gone.status_code == 401 and "log in again" in gone.json()["error"]["message"]


async def test_keys_and_sessions_are_separate_credentials(start_edge: Callable[..., Awaitable[Edge]]) -> None:
    edge = await start_edge()
    csrf = (await edge.login()).json()["csrf_token"]
    key = {"authorization": f"Bearer {edge.api_key}"}

    # Session-only routes refuse API keys (valid ones, even next to a live session cookie) with 403, as documented.
    for path in ("/v1/billing/create-checkout", "/v1/billing/customer-portal", "/v1/billing/sync-subscription"):
        refused = await edge.post(path, csrf=csrf, **key)
        assert refused.status_code == 403, refused.text
        assert "dashboard session" in refused.json()["error"]["message"]
    # API-key routes ignore the session cookie.
    assert (await edge.client.get("/v1/account/keys")).status_code == 401
    assert (await edge.client.get("/v1/account/keys", headers=key)).status_code == 200
    # The billing status is read by both.
    by_session = await edge.client.get("/v1/account/billing")
    by_key = await edge.client.get("/v1/account/billing", headers=key)
    assert by_session.status_code == by_key.status_code == 200
    assert by_session.json()["tier"] == by_key.json()["tier"] == "free"
    # So are the request log and the usage figures.
    for path in ("/v1/account/usage/summary", "/v1/account/requests", "/v1/account/sessions", "/v1/usage/daily"):
        by_session, by_key = await edge.client.get(path), await edge.client.get(path, headers=key)
        assert by_session.status_code == by_key.status_code == 200, path
        assert by_session.json() == by_key.json(), path

    # Local mode: the Stripe endpoints answer 501 and say why, once session and CSRF pass.
    assert (await edge.post("/v1/billing/create-checkout")).status_code == 403  # CSRF missing
    local = await edge.post("/v1/billing/create-checkout", csrf=csrf)
    assert local.status_code == 501 and "STRIPE_SECRET_KEY" in local.json()["error"]["message"]
    webhook = await edge.client.post("/v1/billing/webhook", content=b"{}", headers={"stripe-signature": "t=1,v1=x"})
    assert webhook.status_code == 501
    edge.client.cookies.clear()
    assert (await edge.post("/v1/billing/create-checkout", csrf=csrf)).status_code == 401


async def test_sessions_expire_and_failed_logins_are_throttled(
    start_edge: Callable[..., Awaitable[Edge]], orqen_redis_db_url: str
) -> None:
    edge = await start_edge(session_max_seconds=600, login_max_failures=3)
    assert (await edge.login()).status_code == 200
    redis = Redis.from_url(orqen_redis_db_url)
    [key] = await redis.keys("orqen:dashboard-session:*")
    session = orjson.loads(await redis.get(key))
    session["created_at"] = time.time() - 601  # logged in longer ago than the maximum
    await redis.set(key, orjson.dumps(session), ex=60)
    assert (await edge.client.get("/v1/dashboard/session")).status_code == 401
    assert not await redis.exists(key)
    await redis.aclose()

    for _ in range(3):
        assert (await edge.login("wrong password!")).status_code == 401
    throttled = await edge.login()  # even the right password, until the window passes
    assert throttled.status_code == 429 and "retry-after" in throttled.headers


async def test_logins_fail_closed_when_redis_cannot_count_failures(
    start_edge: Callable[..., Awaitable[Edge]], tmp_path: Path
) -> None:
    with start_redis(tmp_path / "redis") as private:
        edge = await start_edge(redis_url=private.url, login_max_failures=3)
        assert (await edge.login("wrong password!")).status_code == 401
        redis = Redis.from_url(private.url)
        # Reads still work, writes are refused (out of memory): no failure could be counted.
        await redis.config_set("maxmemory", 1)
        await redis.config_set("maxmemory-policy", "noeviction")
        await redis.aclose()
        for password in ["wrong password!"] * 5 + [PASSWORD]:
            refused = await edge.login(password)
            assert refused.status_code == 503, refused.text
            assert "logins are unavailable" in refused.json()["error"]["message"].lower()
            assert "retry-after" in refused.headers
    # Redis gone altogether: the same, right password or wrong.
    for password in ("wrong password!", PASSWORD):
        refused = await edge.login(password)
        assert refused.status_code == 503 and "retry-after" in refused.headers, refused.text


async def test_upgrade_through_checkout_and_webhooks_via_the_edge(
    start_edge: Callable[..., Awaitable[Edge]], stripe_fake: StripeFake
) -> None:
    edge = await start_edge(stripe_fake.url)
    csrf = (await edge.login()).json()["csrf_token"]

    checkout = await edge.post("/v1/billing/create-checkout", csrf=csrf)
    assert checkout.status_code == 200, checkout.text
    session_id = checkout.json()["id"]
    assert checkout.json()["url"].startswith(stripe_fake.url)
    stripe_fake.complete_checkout(session_id)

    bad = await edge.post("/v1/billing/sync-checkout", {"session_id": 42}, csrf=csrf)
    assert bad.status_code == 400
    synced = await edge.post("/v1/billing/sync-checkout", {"session_id": session_id}, csrf=csrf)
    assert synced.status_code == 200 and synced.json()["tier"] == "pro", synced.text
    row = await edge.billing_pool.fetchrow("SELECT tier, status, stripe_subscription_id FROM subscriptions")
    assert (row["tier"], row["status"]) == ("pro", "active")

    portal = await edge.post("/v1/billing/customer-portal", csrf=csrf)
    assert portal.status_code == 200 and portal.json()["id"].startswith("bps_")

    # Stripe tells us the subscription was deleted: a bad signature changes nothing, a good one downgrades.
    customer = await edge.billing_pool.fetchval("SELECT stripe_customer_id FROM subscriptions")
    subscription = {"id": row["stripe_subscription_id"], "object": "subscription", "customer": customer,
                    "status": "canceled", "metadata": {}, "items": {"data": []}}  # fmt: skip
    event = {
        "id": "evt_edge_1",
        "object": "event",
        "type": "customer.subscription.deleted",
        "created": int(time.time()) + 5,
        "data": {"object": subscription},
    }
    payload = orjson.dumps(event)
    forged = stripe.WebhookSignature.generate_signature_header(payload.decode(), "whsec_wrong")
    rejected = await edge.client.post("/v1/billing/webhook", content=payload, headers={"stripe-signature": forged})
    assert rejected.status_code == 400 and "signature" in rejected.json()["error"]["message"]
    assert await edge.billing_pool.fetchval("SELECT tier FROM subscriptions") == "pro"
    assert await edge.billing_pool.fetchval("SELECT count(*) FROM stripe_events") == 0

    signature = stripe.WebhookSignature.generate_signature_header(payload.decode(), WEBHOOK_SECRET)
    for duplicate in (False, True):
        accepted = await edge.client.post(
            "/v1/billing/webhook", content=payload, headers={"stripe-signature": signature}
        )
        assert accepted.status_code == 200 and accepted.json()["duplicate"] is duplicate
    assert await edge.billing_pool.fetchval("SELECT tier FROM subscriptions") == "free"
    status = (await edge.client.get("/v1/account/billing")).json()
    assert (status["tier"], status["subscription_status"], status["stripe_enabled"]) == ("free", "canceled", True)
