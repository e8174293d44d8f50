"""The account API through the running stack: keys, provider credentials, models, routing,
and tenant isolation on every endpoint."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import openai
import pytest

from accounts import http, logged, new_account_key, remember_secret
from harness import ANTHROPIC_KEY, OPENAI_KEY
from orqen_common.db import plain_postgres_url


@pytest.fixture
async def alice(stack: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with http(stack, await new_account_key(stack, f"alice-{id(stack)}-{asyncio.get_running_loop().time()}")) as c:
        yield c


@pytest.fixture
async def bob(stack: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with http(stack, await new_account_key(stack, f"bob-{id(stack)}-{asyncio.get_running_loop().time()}")) as c:
        yield c


def key_of(client: httpx.AsyncClient) -> str:
    return client.headers["authorization"].removeprefix("Bearer ")


async def chat(client: httpx.AsyncClient, model: str = "gpt-4o-mini", **extra: Any) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hello"}], **extra.pop("body", {})}
    return await client.post("/v1/chat/completions", json=body, **extra)


async def test_keys_are_created_listed_used_and_revoked_at_once(stack: Any, alice: httpx.AsyncClient) -> None:
    created = await alice.post("/v1/account/keys", json={"name": "ci"})
    assert created.status_code == 201
    key = created.json()
    remember_secret("API key", key["key"])
    assert key["key"].startswith("sk-orq-") and key["name"] == "ci" and key["key"].startswith(key["prefix"])
    async with http(stack, key["key"]) as ci:
        assert (await chat(ci)).status_code == 200
        listed = (await alice.get("/v1/account/keys")).json()["data"]
        entry = next(k for k in listed if k["id"] == key["id"])
        assert entry["name"] == "ci" and "key" not in entry and entry["revoked_at"] is None
        assert entry["last_used_at"] is not None
        revoked = await alice.delete(f"/v1/account/keys/{key['id']}")
        assert revoked.status_code == 200 and revoked.json()["revoked_at"]
        refused = await chat(ci)  # at once, although the key was in the auth cache
        assert refused.status_code == 401 and refused.json()["error"]["type"] == "authentication_error"


async def test_a_saved_provider_key_is_used_never_shown_and_stored_only_encrypted(
    stack: Any, alice: httpx.AsyncClient
) -> None:
    saved_key = remember_secret("saved provider key", "sk-ant-alice-saved-key-9876")
    saved = await alice.post("/v1/account/providers", json={"provider": "anthropic", "api_key": saved_key})
    assert saved.status_code == 200, saved.text
    info = saved.json()
    assert info["last4"] == "9876" and info["provider"] == "anthropic" and saved_key not in saved.text
    listed = await alice.get("/v1/account/providers")
    assert saved_key not in listed.text and [c["id"] for c in listed.json()["data"]] == [info["id"]]
    # Alice's own key wins over the operator's: the fake Anthropic knows only the operator's, and says so.
    refused = await chat(alice, "claude-sonnet-4-6")
    assert refused.status_code == 401 and "anthropic returned 401" in refused.json()["error"]["message"]
    # A per-request key (X-Orqen-Provider-Key) wins over the saved one.
    answered = await chat(alice, "claude-sonnet-4-6", headers={"x-orqen-provider-key": ANTHROPIC_KEY})
    assert answered.status_code == 200
    assert stack.upstreams.anthropic.requests[-1]["headers"]["x-api-key"] == ANTHROPIC_KEY
    # Postgres holds ciphertext only.
    conn = await asyncpg.connect(plain_postgres_url(stack.service_env["ORQEN_DATABASE_URL"]))
    try:
        rows = await conn.fetch("SELECT * FROM accounting.provider_credentials")
    finally:
        await conn.close()
    dumped = repr([dict(r) for r in rows]).encode()
    assert rows and saved_key.encode() not in dumped and b"alice-saved" not in dumped
    deleted = await alice.delete(f"/v1/account/providers/{info['id']}")
    assert deleted.json() == {"id": info["id"], "deleted": True}
    assert (await chat(alice, "claude-sonnet-4-6")).status_code == 200  # back to the operator's key


async def test_an_accounts_own_openai_compatible_provider_is_reachable_by_its_name(
    stack: Any, alice: httpx.AsyncClient, bob: httpx.AsyncClient
) -> None:
    base_url = stack.upstreams.urls["openai"] + "/v1"
    saved = await alice.post(
        "/v1/account/providers", json={"provider": "myllm", "api_key": OPENAI_KEY, "base_url": base_url}
    )
    assert saved.status_code == 200, saved.text
    assert saved.json()["base_url"] == base_url
    answered = await chat(alice, "myllm/llama-3-8b")
    assert answered.status_code == 200, answered.text
    assert answered.headers["x-orqen-model"] == "llama-3-8b"
    upstream = stack.upstreams.openai.requests[-1]
    assert upstream["body"]["model"] == "llama-3-8b" and upstream["headers"]["authorization"] == f"Bearer {OPENAI_KEY}"
    # Only Alice has "myllm": for Bob it is just a model name for the default provider.
    await chat(bob, "myllm/llama-3-8b")
    assert stack.upstreams.openai.requests[-1]["body"]["model"] == "myllm/llama-3-8b"


async def test_provider_credentials_are_validated(alice: httpx.AsyncClient) -> None:
    missing = await alice.post(
        "/v1/account/providers", json={"provider": "bedrock", "auth": "iam", "region": "us-east-1"}
    )
    assert missing.status_code == 400 and "access_key_id" in missing.json()["error"]["message"]
    unknown = await alice.post("/v1/account/providers", json={"provider": "openai", "api_key": "k", "colour": "red"})
    assert unknown.status_code == 400 and "colour" in unknown.json()["error"]["message"]


async def test_models_list_connected_providers_and_routing_strings(stack: Any, alice: httpx.AsyncClient) -> None:
    client = openai.OpenAI(base_url=stack.info.edge_url + "/v1", api_key=key_of(alice), max_retries=0)
    ids = {m.id for m in await asyncio.to_thread(client.models.list)}
    assert {"orqen/auto", "orqen/cheap", "orqen/fast", "orqen/capable", "gpt-4o-mini"} <= ids
    assert any(i.startswith("claude-") for i in ids) and any(i.startswith("bedrock/") for i in ids)
    one = await asyncio.to_thread(client.models.retrieve, "gpt-4o-mini")
    assert one.id == "gpt-4o-mini" and one.owned_by == "openai"
    with pytest.raises(openai.NotFoundError):
        await asyncio.to_thread(client.models.retrieve, "no-such-model")


async def test_a_routing_string_picks_a_model_and_says_which(stack: Any, alice: httpx.AsyncClient) -> None:
    status = (await alice.get("/v1/account/routing/models/status")).json()
    assert status["prices_as_of"]
    priced = [m for m in status["data"] if m["enabled"] and m["input_price"] > 0]
    answered = await chat(alice, "orqen/capable")
    assert answered.status_code == 200, answered.text
    chosen = answered.headers["x-orqen-model"]
    assert answered.json()["model"] == chosen.split("/", 1)[-1] or answered.json()["model"] == chosen
    assert chosen in {m["id"] for m in priced}
    # Switched off, it is never chosen again.
    toggled = await alice.post("/v1/account/routing/models/toggle", json={"model": chosen, "enabled": False})
    assert {"model": chosen, "enabled": False} in toggled.json()["data"]
    again = await chat(alice, "orqen/capable")
    assert again.status_code == 200 and again.headers["x-orqen-model"] != chosen


async def test_routing_preferences_have_defaults_update_partially_and_validate(alice: httpx.AsyncClient) -> None:
    defaults = (await alice.get("/v1/account/routing/preferences")).json()
    assert defaults == {"mode": "auto", "k_floor": 3, "k_cap": 0, "ab_control_share": 0.05, "fallback_models": []}
    updated = await alice.put("/v1/account/routing/preferences", json={"k_cap": 12, "fallback_models": ["gpt-4o-mini"]})
    assert updated.json() == {**defaults, "k_cap": 12, "fallback_models": ["gpt-4o-mini"]}
    bad = await alice.put("/v1/account/routing/preferences", json={"mode": "telepathy"})
    assert bad.status_code == 400 and "mode" in bad.json()["error"]["message"]


async def test_the_fallback_chain_answers_when_the_requested_model_fails(stack: Any, alice: httpx.AsyncClient) -> None:
    await alice.put("/v1/account/routing/preferences", json={"fallback_models": ["claude-sonnet-4-6"]})
    answered = await chat(alice, "gpt-fake-500")
    assert answered.status_code == 200, answered.text
    assert answered.headers["x-orqen-model"] == "claude-sonnet-4-6"
    assert answered.json()["choices"][0]["message"]["content"] == "echo: hello"
    # Every attempt is in the request log, with why each model was tried.
    entry = await logged(alice, answered.headers["x-request-id"])
    assert entry["route_reason"] == "fallback" and entry["provider"] == "anthropic"
    assert [(a["model"], a["status"], a["reason"]) for a in entry["attempts"]] == [
        ("gpt-fake-500", 500, "requested"),
        ("gpt-fake-500", 500, "retry"),
        ("gpt-fake-500", 500, "retry"),
        ("claude-sonnet-4-6", 200, "fallback"),
    ]


async def test_a_fallback_on_another_provider_never_gets_the_callers_provider_key(
    stack: Any, alice: httpx.AsyncClient
) -> None:
    await alice.put("/v1/account/routing/preferences", json={"fallback_models": ["claude-sonnet-4-6"]})
    callers_key = remember_secret(
        "caller's provider key", "sk-callers-own-openai-key-5678"
    )  # the fake OpenAI refuses it: 401 moves on to the fallback
    answered = await chat(alice, "gpt-4o-mini", headers={"x-orqen-provider-key": callers_key})
    assert answered.status_code == 200, answered.text
    assert answered.headers["x-orqen-model"] == "claude-sonnet-4-6"
    # Anthropic, another provider, got the operator's key: with the caller's it would have answered 401.
    assert stack.upstreams.anthropic.requests[-1]["headers"]["x-api-key"] == ANTHROPIC_KEY
    assert callers_key not in repr(stack.upstreams.anthropic.requests)
    entry = await logged(alice, answered.headers["x-request-id"])
    assert [(a["model"], a["status"], a["reason"]) for a in entry["attempts"]] == [
        ("gpt-4o-mini", 401, "requested"),
        ("claude-sonnet-4-6", 200, "fallback"),
    ]


async def test_the_request_log_names_the_tools_the_model_called_streaming_too(alice: httpx.AsyncClient) -> None:
    tools = [
        {"type": "function", "function": {"name": n, "parameters": {"type": "object"}}}
        for n in ("get_weather", "get_time")
    ]
    ask = 'call get_weather {"city": "Paris"} call get_time {"zone": "CET"}'
    for stream in (False, True):
        body = {"messages": [{"role": "user", "content": ask}], "tools": tools, "stream": stream}
        answered = await chat(alice, body=body)
        assert answered.status_code == 200, answered.text
        entry = await logged(alice, answered.headers["x-request-id"])
        assert entry["tools_called"] == ["get_weather", "get_time"]


async def test_routing_traces_calibration_and_insights_describe_the_accounts_traffic(
    alice: httpx.AsyncClient,
) -> None:
    for _ in range(3):
        assert (await chat(alice, "gpt-4o-mini")).status_code == 200
    last = await chat(alice, "claude-sonnet-4-6")
    await logged(alice, last.headers["x-request-id"])
    insights = (await alice.get("/v1/account/routing/insights", params={"days": 1})).json()
    assert insights["days"] == 1 and insights["most_used"]["model"] == "gpt-4o-mini"
    assert insights["most_used"]["requests"] == 3 and insights["fastest"]["model"] == "gpt-4o-mini"
    # No A/B control traffic yet: the figures are empty, the K policy is the account's.
    calibration = (await alice.get("/v1/account/routing/calibration")).json()
    assert calibration["control_requests"] == 0 and len(calibration["buckets"]) == 10
    assert calibration["policy"]["k_floor"] == 3 and insights["best_recall"] is None
    assert (await alice.get("/v1/account/routing/traces")).json() == {"object": "list", "data": []}
    assert (await alice.get("/v1/account/routing/insights", params={"days": 365})).status_code == 400


async def test_transient_upstream_errors_are_retried(alice: httpx.AsyncClient, stack: Any) -> None:
    answered = await chat(alice, f"gpt-fake-flaky-429-2-{id(alice)}")
    assert answered.status_code == 200, answered.text


async def test_no_account_reaches_another_accounts_keys_credentials_or_requests(
    stack: Any, alice: httpx.AsyncClient, bob: httpx.AsyncClient
) -> None:
    alice_keys = (await alice.get("/v1/account/keys")).json()["data"]
    saved = (
        await alice.post(
            "/v1/account/providers",
            json={"provider": "groq", "api_key": remember_secret("saved provider key", "gsk-alice-1234")},
        )
    ).json()
    answered = await chat(alice)
    request_id = answered.headers["x-request-id"]
    # Bob sees none of it, and cannot act on any of it.
    assert {k["id"] for k in (await bob.get("/v1/account/keys")).json()["data"]}.isdisjoint(
        {k["id"] for k in alice_keys}
    )
    assert (await bob.get("/v1/account/providers")).json()["data"] == []
    assert (await bob.delete(f"/v1/account/keys/{alice_keys[0]['id']}")).status_code == 404
    assert (await bob.delete(f"/v1/account/providers/{saved['id']}")).status_code == 404
    assert (await bob.get(f"/v1/account/requests/{request_id}")).status_code == 404
    assert request_id not in (await bob.get("/v1/account/requests")).text
    await logged(alice, request_id)
    assert (await bob.get("/v1/account/routing/insights")).json()["models"] == []
    assert (await bob.get("/v1/account/routing/calibration")).json()["control_requests"] == 0
    await bob.put("/v1/account/routing/preferences", json={"k_cap": 99})
    assert (await alice.get("/v1/account/routing/preferences")).json()["k_cap"] != 99
    toggled = await bob.post("/v1/account/routing/models/toggle", json={"model": "gpt-4o-mini", "enabled": False})
    assert toggled.status_code == 200, toggled.text
    alice_models = (await alice.get("/v1/account/routing/models/status")).json()["data"]
    assert next(m for m in alice_models if m["id"] == "gpt-4o-mini")["enabled"] is True
    assert "gpt-4o-mini" in {m["id"] for m in (await alice.get("/v1/models")).json()["data"]}
    assert "gpt-4o-mini" not in {m["id"] for m in (await bob.get("/v1/models")).json()["data"]}
    # Bob's chats never use Alice's saved Groq key.
    await chat(bob, "groq/llama-3.3-70b-versatile")
    assert stack.upstreams.openai.requests[-1]["headers"]["authorization"] != "Bearer gsk-alice-1234"
    # And Alice's key still works: nothing Bob did touched it.
    assert (await chat(alice)).status_code == 200


async def test_account_endpoints_need_a_key(stack: Any) -> None:
    async with httpx.AsyncClient(base_url=stack.info.edge_url) as anonymous:
        for method, path in [
            ("GET", "/v1/account/keys"),
            ("POST", "/v1/account/keys"),
            ("GET", "/v1/account/providers"),
            ("POST", "/v1/account/providers"),
            ("GET", "/v1/models"),
            ("GET", "/v1/account/routing/preferences"),
            ("PUT", "/v1/account/routing/preferences"),
            ("POST", "/v1/account/routing/models/toggle"),
            ("GET", "/v1/account/routing/traces"),
            ("GET", "/v1/account/routing/calibration"),
            ("GET", "/v1/account/routing/insights"),
        ]:
            response = await anonymous.request(method, path, json={})
            assert response.status_code == 401, (method, path)
