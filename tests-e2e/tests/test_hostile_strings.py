"""Model names no provider has (NUL, control characters, emoji) through each official SDK.

Each is refused with a 400 in the SDK's own error shape before anything goes upstream, the
connection answered (never dropped), and every request, refused or not, is in the request log
and in billing's meter exactly once: nothing poisons the event path behind it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import asyncpg
import httpx
import openai
import pytest
from botocore.exceptions import ClientError

from orqen_common.db import plain_postgres_url
from sdk_clients import AnthropicSDK, Ask, BedrockSDK, OpenAISDK, Turn

from .test_billing import api_key_of, eventually

HOSTILE_MODELS = {
    "nul": "gpt-4o-mini\x00x",
    "control": "gpt-4o-mini\x01",
    "newline": "gpt-4o-mini\nx-orqen-injected: 1",
    "emoji": "gpt-4o-mini-\U0001f600",
}
INGRESSES = ("openai", "anthropic", "bedrock")


@pytest.fixture
async def db(stack: Any) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(plain_postgres_url(stack.service_env["ORQEN_DATABASE_URL"]))
    yield conn
    await conn.close()


def _refused_in_sdk_shape(stack: Any, key: str, ingress: str, model: str) -> None:
    request = Ask(model=model, turns=[Turn("user", "hi")])
    if ingress == "openai":
        with pytest.raises(openai.BadRequestError) as oe:
            OpenAISDK(stack.info.edge_url, key).ask(request)
        assert oe.value.response.json()["error"]["type"] == "invalid_request_error"
        assert "Invalid model" in oe.value.response.json()["error"]["message"]
    elif ingress == "anthropic":
        with pytest.raises(anthropic.BadRequestError) as ae:
            AnthropicSDK(stack.info.edge_url, key).ask(request)
        assert ae.value.response.json()["type"] == "error"
        assert ae.value.response.json()["error"]["type"] == "invalid_request_error"
    else:
        with pytest.raises(ClientError) as be:
            BedrockSDK(stack.info.tls_url, str(stack.info.cert_path)).ask(request)
        assert be.value.response["Error"]["Code"] == "ValidationException"
        assert be.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert "Invalid model" in be.value.response["Error"]["Message"]


@pytest.mark.parametrize("ingress", INGRESSES)
async def test_hostile_model_names_are_400_in_each_sdk_and_counted_once_by_the_log_and_billing(
    stack: Any, db: asyncpg.Connection, ingress: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = f"hostile-{ingress}-{id(stack)}"
    key = await api_key_of(stack, account)
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", key)
    upstream_before = sum(len(stack.upstreams.by_name(p).requests) for p in ("openai", "anthropic", "bedrock"))
    for model in HOSTILE_MODELS.values():
        await asyncio.to_thread(_refused_in_sdk_shape, stack, key, ingress, model)
    upstream_after = sum(len(stack.upstreams.by_name(p).requests) for p in ("openai", "anthropic", "bedrock"))
    assert upstream_after == upstream_before  # nothing was sent to a provider
    # A healthy request behind them is answered and recorded like the refused ones.
    sdk = {
        "openai": OpenAISDK(stack.info.edge_url, key),
        "anthropic": AnthropicSDK(stack.info.edge_url, key),
        "bedrock": BedrockSDK(stack.info.tls_url, str(stack.info.cert_path)),
    }[ingress]
    await asyncio.to_thread(sdk.ask, Ask(model="gpt-4o-mini", turns=[Turn("user", "hi")]))
    account_id = await db.fetchval("SELECT id FROM accounting.accounts WHERE name = $1", account)
    expected = len(HOSTILE_MODELS) + 1

    async def logged() -> int:
        return int(await db.fetchval("SELECT count(*) FROM accounting.requests WHERE account_id = $1", account_id))

    async def metered() -> int:
        sql = "SELECT count(*) FROM billing.metered_requests WHERE account_id = $1"
        return int(await db.fetchval(sql, account_id))

    async def both_recorded() -> bool:
        return await logged() >= expected and await metered() >= expected

    await eventually(both_recorded, "the request log and billing to record every request")
    await asyncio.sleep(0.5)  # a request counted twice would land now
    assert (await logged(), await metered()) == (expected, expected)
    statuses = await db.fetch(
        "SELECT status, count(*) AS n FROM accounting.requests WHERE account_id = $1 GROUP BY status ORDER BY status",
        account_id,
    )
    assert [(r["status"], r["n"]) for r in statuses] == [(200, 1), (400, len(HOSTILE_MODELS))]


async def test_key_names_and_provider_fields_with_control_characters_are_400(stack: Any) -> None:
    headers = {"Authorization": f"Bearer {stack.info.api_key}"}
    async with httpx.AsyncClient(base_url=stack.info.edge_url, headers=headers, timeout=30) as client:
        key = await client.post("/v1/account/keys", json={"name": "ci\x00key"})
        provider = await client.post("/v1/account/providers", json={"provider": "openai", "api_key": "sk-\nx"})
    assert key.status_code == 400 and "control characters" in key.json()["error"]["message"]
    assert provider.status_code == 400 and "'api_key'" in provider.json()["error"]["message"]
    assert "sk-" not in provider.text  # a credential is never echoed
