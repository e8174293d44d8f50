"""The account's owners through the JSON account API: invite, sign up, remove (never the last),
change the own password (other sessions end); another account's owner ids answer 404."""

from collections.abc import Awaitable, Callable

import httpx
import orjson

from orqen_accounting.owners import OwnerRepository

from .edge_app import EMAIL, JSON, PASSWORD, Edge

NEW_PASSWORD = "a different long passphrase"


async def _login(client: httpx.AsyncClient, email: str = EMAIL, password: str = PASSWORD) -> str:
    """Log in on `client` (its cookie jar holds the session); the session's CSRF token."""
    response = await client.post(
        "/v1/dashboard/login", content=orjson.dumps({"email": email, "password": password}), headers=JSON
    )
    assert response.status_code == 200, response.text
    return str(response.json()["csrf_token"])


async def _other_client(edge: Edge) -> httpx.AsyncClient:
    """A second browser: same app, its own cookie jar."""
    return httpx.AsyncClient(transport=edge.client._transport, base_url=str(edge.client.base_url))


async def test_an_owner_invites_another_who_signs_up_once_and_logs_in(
    start_edge: Callable[..., Awaitable[Edge]],
) -> None:
    edge = await start_edge()
    csrf = await _login(edge.client)
    key = {"authorization": f"Bearer {edge.api_key}"}
    # Changing who can sign in needs the session and its CSRF token; an API key is refused.
    assert (await edge.post("/v1/account/owners/invites")).status_code == 403
    assert (await edge.post("/v1/account/owners/invites", csrf=csrf, **key)).status_code == 403

    invite = await edge.post("/v1/account/owners/invites", csrf=csrf)
    assert invite.status_code == 201, invite.text
    token, url = invite.json()["token"], invite.json()["url"]
    assert url == f"https://edge/dashboard/signup/{token}" and invite.json()["expires_at"]

    async with await _other_client(edge) as browser:
        weak = {"token": token, "email": "grace@acme.test", "password": "short"}
        assert (await browser.post("/v1/dashboard/signup", content=orjson.dumps(weak), headers=JSON)).status_code == 400
        body = {"token": token, "email": "Grace@acme.test", "password": NEW_PASSWORD}
        signed_up = await browser.post("/v1/dashboard/signup", content=orjson.dumps(body), headers=JSON)
        assert signed_up.status_code == 201, signed_up.text
        assert signed_up.json()["email"] == "grace@acme.test"
        reused = await browser.post(
            "/v1/dashboard/signup", content=orjson.dumps({**body, "email": "eve@acme.test"}), headers=JSON
        )
        assert reused.status_code == 404 and "already used or expired" in reused.json()["error"]["message"]
        login = await browser.post(
            "/v1/dashboard/login",
            content=orjson.dumps({"email": "grace@acme.test", "password": NEW_PASSWORD}),
            headers=JSON,
        )
        assert login.status_code == 200 and login.json()["account"]["id"] == edge.account_id

    by_key = await edge.client.get("/v1/account/owners", headers=key)
    by_session = await edge.client.get("/v1/account/owners")
    assert by_key.status_code == by_session.status_code == 200
    assert (
        [o["email"] for o in by_key.json()["data"]]
        == [EMAIL, "grace@acme.test"]
        == [o["email"] for o in by_session.json()["data"]]
    )


async def test_removing_an_owner_ends_its_sessions_but_never_removes_the_last(
    start_edge: Callable[..., Awaitable[Edge]],
) -> None:
    edge = await start_edge()
    owners = OwnerRepository(edge.accounting_pool)
    grace = await owners.create(edge.account_id, "grace@acme.test", NEW_PASSWORD)
    other_account = await edge.accounting_pool.fetchval(
        "INSERT INTO accounts (name) VALUES ('other') RETURNING id::text"
    )
    stranger = await owners.create(other_account, "eve@other.test", NEW_PASSWORD)
    csrf = await _login(edge.client)

    async with await _other_client(edge) as graces_browser:
        await _login(graces_browser, "grace@acme.test", NEW_PASSWORD)
        assert (await graces_browser.get("/v1/dashboard/session")).status_code == 200

        for unknown in (stranger.id, "00000000-0000-0000-0000-000000000000"):
            response = await edge.client.delete(f"/v1/account/owners/{unknown}", headers={"x-csrf-token": csrf})
            assert response.status_code == 404, response.text
        assert (await edge.client.delete(f"/v1/account/owners/{grace.id}")).status_code == 403  # no CSRF token
        removed = await edge.client.delete(f"/v1/account/owners/{grace.id}", headers={"x-csrf-token": csrf})
        assert removed.status_code == 200 and removed.json()["email"] == "grace@acme.test"
        # Grace's session ended with her.
        assert (await graces_browser.get("/v1/dashboard/session")).status_code == 401

    me = (await edge.client.get("/v1/dashboard/session")).json()["owner"]["id"]
    last = await edge.client.delete(f"/v1/account/owners/{me}", headers={"x-csrf-token": csrf})
    assert last.status_code == 400 and "last owner" in last.json()["error"]["message"]
    assert [o["email"] for o in (await edge.client.get("/v1/account/owners")).json()["data"]] == [EMAIL]


async def test_changing_the_password_needs_the_current_one_and_ends_the_other_sessions(
    start_edge: Callable[..., Awaitable[Edge]],
) -> None:
    edge = await start_edge()
    async with await _other_client(edge) as laptop:
        await _login(laptop)
        csrf = await _login(edge.client)

        wrong = await edge.post(
            "/v1/account/owners/me/password",
            {"current_password": "not the password", "new_password": NEW_PASSWORD},
            csrf=csrf,
        )
        assert wrong.status_code == 403 and "current password is wrong" in wrong.json()["error"]["message"]
        assert (await laptop.get("/v1/dashboard/session")).status_code == 200

        changed = await edge.post(
            "/v1/account/owners/me/password",
            {"current_password": PASSWORD, "new_password": NEW_PASSWORD},
            csrf=csrf,
        )
        assert changed.status_code == 200, changed.text
        # This session stays, the laptop's ended; the old password no longer works, the new one does.
        assert (await edge.client.get("/v1/dashboard/session")).status_code == 200
        assert (await laptop.get("/v1/dashboard/session")).status_code == 401
    assert (await edge.login()).status_code == 401
    assert (await edge.login(NEW_PASSWORD)).status_code == 200


async def test_wrong_current_passwords_count_as_failed_logins(start_edge: Callable[..., Awaitable[Edge]]) -> None:
    edge = await start_edge(login_max_failures=2)
    csrf = await _login(edge.client)
    wrong = {"current_password": "not the password", "new_password": NEW_PASSWORD}
    for _ in range(2):
        assert (await edge.post("/v1/account/owners/me/password", wrong, csrf=csrf)).status_code == 403
    # The email's failures are used up: even the right password waits, here and at the sign-in.
    right = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    throttled = await edge.post("/v1/account/owners/me/password", right, csrf=csrf)
    assert throttled.status_code == 429 and "retry-after" in throttled.headers
    assert (await edge.login()).status_code == 429
