"""The response cache through the running stack: every ingress SDK x every provider format, an
answer stored from one shape (JSON or stream) and replayed in the other; the headers, the request
log and the savings figures; the account settings and purge; isolation between accounts.

A hit is told by the fake upstreams: it reaches none of them.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from accounts import http, logged, new_account_key
from sdk_clients import SDK, AnthropicSDK, Ask, BedrockSDK, OpenAISDK, Result, Turn

PROVIDERS = {
    "openai": "gpt-4o-mini",
    "anthropic": "claude-sonnet-4-6",
    "bedrock": "bedrock/anthropic.claude-3-haiku-20240307-v1:0",
}
INGRESSES = ("openai", "anthropic", "bedrock")
USE_CACHE = {"x-orqen-cache": "use"}


def sdk_for(stack: Any, ingress: str) -> SDK:
    """The stack's own key through each SDK (Bedrock's comes from AWS_BEARER_TOKEN_BEDROCK)."""
    if ingress == "openai":
        return OpenAISDK(stack.info.edge_url, stack.info.api_key)
    if ingress == "anthropic":
        return AnthropicSDK(stack.info.edge_url, stack.info.api_key)
    return BedrockSDK(stack.info.tls_url, str(stack.info.cert_path))


def probe(text: str) -> Ask:
    return Ask(model="", turns=[Turn("user", text)], max_tokens=100, headers=dict(USE_CACHE))


async def ask(stack: Any, ingress: str, request: Ask) -> Result:
    return await asyncio.to_thread(sdk_for(stack, ingress).ask, request)


@pytest.mark.parametrize("first_stream", [False, True], ids=["stored-from-json", "stored-from-stream"])
@pytest.mark.parametrize("provider", list(PROVIDERS))
@pytest.mark.parametrize("ingress", INGRESSES)
async def test_an_answer_is_replayed_in_either_shape_in_the_callers_format(
    stack: Any, ingress: str, provider: str, first_stream: bool
) -> None:
    fake = stack.upstreams.by_name(provider)
    request = probe(f"cache probe {uuid.uuid4().hex}")
    request.model = PROVIDERS[provider]
    before = len(fake.requests)
    request.stream = first_stream
    first = await ask(stack, ingress, request)
    assert len(fake.requests) == before + 1
    for stream in (not first_stream, first_stream):  # the other shape, then the same one again
        request.stream = stream
        again = await ask(stack, ingress, request)
        assert len(fake.requests) == before + 1, "a hit reaches no provider"
        assert (again.text, again.finish, again.usage) == (first.text, first.finish, first.usage)
        assert again.text.startswith("echo: cache probe")


@pytest.mark.parametrize("ingress", INGRESSES)
async def test_tool_calls_are_replayed_too(stack: Any, ingress: str) -> None:
    request = probe(f'call get_weather {{"city": "{uuid.uuid4().hex}"}}')
    request.model = PROVIDERS["anthropic"]
    request.tools = [
        {
            "name": "get_weather",
            "description": "Current weather for a city.",
            "schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        }
    ]
    first = await ask(stack, ingress, request)
    request.stream = True
    replayed = await ask(stack, ingress, request)
    assert first.finish == replayed.finish == "tool"
    assert [(c.name, c.input) for c in replayed.tool_calls] == [(c.name, c.input) for c in first.tool_calls]


@pytest.fixture
async def alice(stack: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with http(stack, await new_account_key(stack, f"cache-alice-{uuid.uuid4().hex[:8]}")) as client:
        yield client


@pytest.fixture
async def bob(stack: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with http(stack, await new_account_key(stack, f"cache-bob-{uuid.uuid4().hex[:8]}")) as client:
        yield client


async def chat(client: httpx.AsyncClient, text: str, **headers: str) -> httpx.Response:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}
    response = await client.post("/v1/chat/completions", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return response


async def test_an_account_opts_in_sees_hits_in_headers_log_and_savings_and_purges(
    stack: Any, alice: httpx.AsyncClient
) -> None:
    assert (await alice.get("/v1/account/cache")).json() == {
        "enabled": False,
        "ttl_seconds": 3600,
        "entries": 0,
        "bytes": 0,
    }
    text = f"opted in {uuid.uuid4().hex}"
    assert (await chat(alice, text)).headers["x-orqen-cache"] == "miss"  # off: not even stored
    assert (await chat(alice, text)).headers["x-orqen-cache"] == "miss"
    updated = await alice.put("/v1/account/cache", json={"enabled": True, "ttl_seconds": 600})
    assert updated.status_code == 200 and updated.json()["enabled"] is True

    openai_fake = stack.upstreams.by_name("openai")
    before = len(openai_fake.requests)
    miss = await chat(alice, text)
    hit = await chat(alice, text)
    assert (miss.headers["x-orqen-cache"], hit.headers["x-orqen-cache"]) == ("miss", "hit")
    assert len(openai_fake.requests) == before + 1
    assert hit.json()["id"] != miss.json()["id"] and hit.json()["usage"] == miss.json()["usage"]
    assert hit.json()["choices"] == miss.json()["choices"]
    skipped = await chat(alice, text, **{"x-orqen-cache": "skip"})
    assert skipped.headers["x-orqen-cache"] == "miss" and len(openai_fake.requests) == before + 2

    hit_entry = await logged(alice, hit.headers["x-request-id"])
    miss_entry = await logged(alice, miss.headers["x-request-id"])
    assert (hit_entry["cache"], miss_entry["cache"]) == ("hit", "miss")
    assert hit_entry["cost_usd"] == 0 and hit_entry["input_tokens"] == 0
    assert hit_entry["cache_saved_usd"] == pytest.approx(miss_entry["cost_usd"]) and miss_entry["cost_usd"] > 0
    summary = (await alice.get("/v1/account/usage/summary")).json()
    assert summary["cache_hits"] == 1 and summary["cache_saved_usd"] == pytest.approx(miss_entry["cost_usd"])
    savings = (await alice.get("/v1/account/usage/analytics/savings")).json()
    assert savings["cache_hits"] == 1 and savings["savings_usd"] >= summary["cache_saved_usd"] > 0

    held = (await alice.get("/v1/account/cache")).json()
    assert held["entries"] == 1 and held["bytes"] > 0
    purged = (await alice.delete("/v1/account/cache")).json()
    assert purged == {"purged_entries": 1, "purged_bytes": held["bytes"]}
    assert (await chat(alice, text)).headers["x-orqen-cache"] == "miss"


async def test_one_accounts_answers_never_answer_another(
    stack: Any, alice: httpx.AsyncClient, bob: httpx.AsyncClient
) -> None:
    text = f"same question {uuid.uuid4().hex}"
    openai_fake = stack.upstreams.by_name("openai")
    before = len(openai_fake.requests)
    assert (await chat(alice, text, **USE_CACHE)).headers["x-orqen-cache"] == "miss"
    assert (await chat(bob, text, **USE_CACHE)).headers["x-orqen-cache"] == "miss"
    assert len(openai_fake.requests) == before + 2
    assert (await chat(alice, text, **USE_CACHE)).headers["x-orqen-cache"] == "hit"
    assert (await bob.delete("/v1/account/cache")).json()["purged_entries"] == 1  # bob's own only
    assert (await chat(alice, text, **USE_CACHE)).headers["x-orqen-cache"] == "hit"


async def test_bad_cache_headers_and_settings_are_refused_in_the_callers_shape(alice: httpx.AsyncClient) -> None:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    bad_mode = await alice.post("/v1/chat/completions", json=body, headers={"x-orqen-cache": "sometimes"})
    assert bad_mode.status_code == 400 and "x-orqen-cache" in bad_mode.json()["error"]["message"]
    bad_ttl = await alice.post(
        "/v1/messages", json={**body, "max_tokens": 10}, headers={"x-orqen-cache-ttl": "forever"}
    )
    assert bad_ttl.status_code == 400 and bad_ttl.json()["type"] == "error"
    assert (await alice.put("/v1/account/cache", json={"ttl_seconds": 0})).status_code == 400
    assert (await alice.put("/v1/account/cache", json={"colour": "red"})).status_code == 400
