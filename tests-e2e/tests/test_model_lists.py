"""GET /v1/models through the running stack: each connected provider's own list, with kinds,
capabilities and prices, an account's own OpenAI-compatible provider among them, and a provider
whose list fails shown by its status rather than a 500.

The stale-copy path (a list that fails after it was fetched once) needs the TTL to pass; it is
shown against the same fakes and a real Redis in
services/dispatch/tests/integration/test_model_lists_http.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import openai
import pytest

from accounts import http, new_account_key, remember_secret
from fakes.model_lists import ANTHROPIC_MODELS, OPENAI_MODELS
from fakes.openai_upstream import FakeOpenAI
from fakes.serve import BackgroundServer

HOMELAB_KEY = remember_secret("provider key", "sk-homelab-e2e")
HOMELAB_MODELS = ("llama-3.1-8b-instruct", "mistral-7b-instruct-v0.3", "nomic-embed-text-v1.5")


@pytest.fixture
async def account(stack: Any) -> AsyncIterator[httpx.AsyncClient]:
    name = f"lists-{id(stack)}-{asyncio.get_running_loop().time()}"
    async with http(stack, await new_account_key(stack, name)) as client:
        yield client


@pytest.fixture(scope="module")
def homelab() -> Iterator[tuple[FakeOpenAI, str]]:
    """An OpenAI-compatible server of an account's own, with models no other provider lists."""
    fake = FakeOpenAI(HOMELAB_KEY, models=HOMELAB_MODELS)
    with BackgroundServer(fake.app()) as server:
        yield fake, server.url + "/v1"


def sdk(stack: Any, client: httpx.AsyncClient) -> openai.OpenAI:
    key = client.headers["authorization"].removeprefix("Bearer ")
    return openai.OpenAI(base_url=stack.info.edge_url + "/v1", api_key=key, max_retries=0)


async def test_models_come_from_each_connected_providers_own_list(stack: Any, account: httpx.AsyncClient) -> None:
    listed = (await account.get("/v1/models")).json()
    by_id = {m["id"]: m for m in listed["data"]}
    assert set(OPENAI_MODELS) <= set(by_id)
    assert {m[0] for m in ANTHROPIC_MODELS} <= set(by_id)  # claude-sonnet-4-6 included
    assert {"bedrock/amazon.nova-lite-v1:0", "bedrock/us.anthropic.claude-sonnet-4-20250514-v1:0"} <= set(by_id)
    sonnet = by_id["claude-sonnet-4-6"]
    assert sonnet | {"created": 0, "listed_at": 0} == {
        "id": "claude-sonnet-4-6",
        "object": "model",
        "created": 0,
        "owned_by": "anthropic",
        "kind": "chat",
        "provider": "anthropic",
        "capabilities": {"tools": True, "vision": True},
        "context_window": 1_000_000,
        "max_output_tokens": 64_000,
        "pricing": {"input": 3.0, "output": 15.0, "cached_input": 0.3},
        "listed_at": 0,
    }
    assert sonnet["created"] > 0 and sonnet["listed_at"] > 0
    kinds = {i: by_id[i]["kind"] for i in ("text-embedding-3-small", "dall-e-3", "whisper-1", "omni-moderation-latest")}
    assert kinds == {
        "text-embedding-3-small": "embedding",
        "dall-e-3": "image",
        "whisper-1": "audio",
        "omni-moderation-latest": "moderation",
    }
    assert by_id["bedrock/amazon.titan-embed-text-v2:0"]["kind"] == "embedding"
    assert by_id["orqen/auto"]["kind"] == "router"
    statuses = {p["provider"]: p for p in listed["providers"]}
    assert {"openai", "anthropic", "bedrock", "groq", "local"} <= set(statuses)
    assert all(p["status"] == "fresh" and p["models"] > 0 and p["error"] is None for p in statuses.values())
    # The official SDK reads the same list, and one model of it.
    client = sdk(stack, account)
    assert "claude-sonnet-4-6" in {m.id for m in await asyncio.to_thread(client.models.list)}
    one = await asyncio.to_thread(client.models.retrieve, "claude-sonnet-4-6")
    assert one.owned_by == "anthropic" and one.model_extra and one.model_extra["context_window"] == 1_000_000


async def test_a_custom_provider_connected_lists_its_models(
    stack: Any, account: httpx.AsyncClient, homelab: tuple[FakeOpenAI, str]
) -> None:
    fake, base_url = homelab
    saved = await account.post(
        "/v1/account/providers", json={"provider": "homelab", "api_key": HOMELAB_KEY, "base_url": base_url}
    )
    assert saved.status_code == 200, saved.text
    listed = (await account.get("/v1/models")).json()
    homelab_ids = {m["id"]: m for m in listed["data"] if m["provider"] == "homelab"}
    assert set(homelab_ids) == {f"homelab/{m}" for m in HOMELAB_MODELS}
    assert homelab_ids["homelab/nomic-embed-text-v1.5"]["kind"] == "embedding"
    assert homelab_ids["homelab/llama-3.1-8b-instruct"]["pricing"] is None  # no price known for it
    assert fake.requests[-1]["headers"]["authorization"] == f"Bearer {HOMELAB_KEY}"  # read with the account's key
    routing = (await account.get("/v1/account/routing/models")).json()
    llama = next(m for m in routing["data"] if m["id"] == "homelab/llama-3.1-8b-instruct")
    assert (llama["kind"], llama["tier"], llama["tools"]) == ("chat", "fast", True)
    answered = await account.post(
        "/v1/chat/completions",
        json={"model": "homelab/llama-3.1-8b-instruct", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert answered.status_code == 200 and answered.headers["x-orqen-model"] == "llama-3.1-8b-instruct"
    one = (await account.get("/v1/models/homelab/llama-3.1-8b-instruct")).json()
    assert one["provider"] == "homelab" and one["owned_by"] == "homelab"


async def test_a_provider_whose_list_fails_is_shown_without_entries_not_a_500(
    stack: Any, account: httpx.AsyncClient, homelab: tuple[FakeOpenAI, str]
) -> None:
    _, base_url = homelab
    # A key the server refuses: its list answers 401.
    saved = await account.post(
        "/v1/account/providers",
        json={
            "provider": "refusing",
            "api_key": remember_secret("provider key", "sk-not-this-one"),
            "base_url": base_url,
        },
    )
    assert saved.status_code == 200, saved.text
    answered = await account.get("/v1/models")
    assert answered.status_code == 200
    listed = answered.json()
    refusing = next(p for p in listed["providers"] if p["provider"] == "refusing")
    assert refusing == {
        "provider": "refusing",
        "status": "unavailable",
        "fetched_at": None,
        "age_seconds": 0.0,
        "models": 0,
        "error": "401: Incorrect API key provided.",
    }
    assert not [m for m in listed["data"] if m["provider"] == "refusing"]
    assert "gpt-4o-mini" in {m["id"] for m in listed["data"]}  # the other providers' lists still serve
    status = (await account.get("/v1/account/routing/models/status")).json()
    assert any(p["provider"] == "refusing" and p["status"] == "unavailable" for p in status["providers"])
