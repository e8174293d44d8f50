"""Budgets and per-key limits through the running stack: a hard budget holds across 16 concurrent
clients on two edge processes, survives a Redis flush, and is refused in each SDK's shape; a key's
allowed models are enforced; budgets are listed with their use."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anthropic
import boto3
import httpx
import openai
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from redis.asyncio import Redis

from accounts import http, new_account_key
from orqen_stack.procs import free_port

MESSAGES: list[Any] = [{"role": "user", "content": "hello"}]
CLIENTS = 16


@pytest.fixture
def second_edge(stack: Any) -> Iterator[str]:
    """Another edge process beside the stack's, on ports of its own: the same Redis, NATS and services."""
    env = {**os.environ, **stack.service_env, "ORQEN_EDGE_PORT": str(free_port())}
    env["ORQEN_EDGE_TLS_PORT"] = str(free_port())
    env.pop("ORQEN_METRICS_PORT", None)
    log = stack.home / "second-edge.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "orqen_edge"], env=env, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{env['ORQEN_EDGE_PORT']}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, log.read_text()
            subprocess.run(["sleep", "0.1"], check=True)
        else:
            raise AssertionError("the second edge never became ready:\n" + log.read_text())
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise AssertionError("the second edge did not stop within 30 s of SIGTERM:\n" + log.read_text()) from None


@pytest.fixture
async def owner(stack: Any) -> AsyncIterator[httpx.AsyncClient]:
    name = f"budgets-{asyncio.get_running_loop().time()}"
    async with http(stack, await new_account_key(stack, name)) as client:
        yield client


async def _use(client: httpx.AsyncClient, budget_id: str, tokens: int) -> dict[str, Any]:
    """The budget as listed, once the ledger counts `tokens` (accounting consumes events asynchronously)."""
    for _ in range(100):
        listed = (await client.get("/v1/account/budgets")).json()["data"]
        budget: dict[str, Any] = next(b for b in listed if b["id"] == budget_id)
        if budget["tokens"] >= tokens:
            return budget
        await asyncio.sleep(0.1)
    raise AssertionError(f"the budget never counted {tokens} tokens: {budget}")


async def test_a_hard_budget_holds_across_16_clients_on_two_edges_and_a_redis_flush(
    stack: Any, owner: httpx.AsyncClient, second_edge: str
) -> None:
    key = owner.headers["authorization"].removeprefix("Bearer ")
    # What one request costs here: the fake answers the same prompt with the same usage.
    probe = await openai.AsyncOpenAI(base_url=f"{stack.info.edge_url}/v1", api_key=key).chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES
    )
    assert probe.usage is not None
    per_request = probe.usage.total_tokens
    limit = per_request * 40 + per_request // 2  # 40.5 requests' worth, on top of the probe's
    created = await owner.post("/v1/account/budgets", json={"period": "day", "max_tokens": per_request + limit})
    assert created.status_code == 200, created.text
    budget = created.json()
    assert (budget["max_tokens"], budget["status"], budget["soft_percent"]) == (per_request + limit, "ok", 80)

    edges = [stack.info.edge_url, second_edge]
    answered: list[int] = []
    final: list[openai.RateLimitError] = []

    async def client(n: int) -> None:
        sdk = openai.AsyncOpenAI(base_url=f"{edges[n % 2]}/v1", api_key=key, max_retries=0)
        while True:
            try:
                completion = await sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            except openai.RateLimitError as err:
                if "is spent" in err.message:
                    final.append(err)
                    return
                await asyncio.sleep(0.05)  # what is left is held by requests in flight
                continue
            assert completion.usage is not None
            answered.append(completion.usage.total_tokens)

    await asyncio.gather(*(client(n) for n in range(CLIENTS)))
    spent = per_request + sum(answered)
    assert len(final) == CLIENTS
    assert per_request + limit <= spent <= per_request + limit + per_request  # overshoot: one request at most
    err = final[0]
    assert err.status_code == 429 and err.code == "budget_exceeded"
    assert "the daily tokens budget of account" in err.message and "resets at" in err.message
    assert int(err.response.headers["retry-after"]) > 0

    listed = await _use(owner, budget["id"], spent)
    assert listed["tokens"] == spent and listed["status"] == "exceeded"
    assert listed["soft_crossed_at"] is not None and listed["hard_crossed_at"] is not None

    # Redis restarts empty: the counter comes back from the ledger, not as a fresh budget.
    async with Redis.from_url(stack.service_env["ORQEN_REDIS_URL"]) as redis:
        await redis.flushdb()
    with pytest.raises(openai.RateLimitError, match="is spent"):
        await openai.AsyncOpenAI(base_url=f"{second_edge}/v1", api_key=key, max_retries=0).chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES
        )


async def test_a_spent_budget_is_each_sdks_rate_limit_error(stack: Any, owner: httpx.AsyncClient) -> None:
    key = owner.headers["authorization"].removeprefix("Bearer ")
    created = await owner.post("/v1/account/budgets", json={"period": "month", "max_tokens": 1})
    assert created.status_code == 200
    sdk = openai.AsyncOpenAI(base_url=f"{stack.info.edge_url}/v1", api_key=key, max_retries=0)
    await sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # admitted: 1 token was left
    await _use(owner, created.json()["id"], 2)

    with pytest.raises(openai.RateLimitError) as by_openai:
        await sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    body = by_openai.value.body
    assert isinstance(body, dict) and body["type"] == "rate_limit_error" and body["code"] == "budget_exceeded"
    assert "monthly tokens budget of account (1 tokens) is spent" in body["message"]

    claude = anthropic.AsyncAnthropic(base_url=stack.info.edge_url, api_key=key, max_retries=0)
    with pytest.raises(anthropic.RateLimitError) as by_anthropic:
        await claude.messages.create(model="claude-haiku-4-5", max_tokens=10, messages=MESSAGES)
    assert by_anthropic.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]

    previous = os.environ["AWS_BEARER_TOKEN_BEDROCK"]
    os.environ["AWS_BEARER_TOKEN_BEDROCK"] = key  # boto3 takes the Bedrock API key from the environment
    try:
        bedrock = boto3.client(
            "bedrock-runtime",
            region_name="us-east-1",
            endpoint_url=stack.info.tls_url,
            verify=str(stack.info.cert_path),
            config=Config(retries={"max_attempts": 1}),
        )
        with pytest.raises(ClientError) as by_boto3:
            await asyncio.to_thread(
                bedrock.converse,
                modelId="anthropic.claude-3-haiku-20240307-v1:0",
                messages=[{"role": "user", "content": [{"text": "hello"}]}],
            )
    finally:
        os.environ["AWS_BEARER_TOKEN_BEDROCK"] = previous
    error = by_boto3.value.response["Error"]
    assert error["Code"] == "ThrottlingException" and "budget" in error["Message"]


async def test_a_key_may_use_only_its_allowed_models(stack: Any, owner: httpx.AsyncClient) -> None:
    created = await owner.post("/v1/account/keys", json={"name": "ci", "allowed_models": ["gpt-4o-mini*"], "rpm": 50})
    assert created.status_code == 201, created.text
    key = created.json()
    listed = next(k for k in (await owner.get("/v1/account/keys")).json()["data"] if k["id"] == key["id"])
    assert (listed["allowed_models"], listed["rpm"], listed["tpm"]) == (["gpt-4o-mini*"], 50, 0)
    async with http(stack, key["key"]) as ci:
        allowed = await ci.post("/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": MESSAGES})
        assert allowed.status_code == 200 and allowed.headers["x-ratelimit-limit-requests"] == "50"
        refused = await ci.post("/v1/chat/completions", json={"model": "gpt-4o", "messages": MESSAGES})
        assert refused.status_code == 403
        error = refused.json()["error"]
        assert (error["type"], error["code"]) == ("permission_error", "model_not_allowed")
        assert error["message"] == (
            f"Model 'gpt-4o' is not allowed for API key 'ci ({key['prefix']}...)'; it may use: gpt-4o-mini*."
        )
        # Lifted at once on this replica.
        patched = await owner.patch(f"/v1/account/keys/{key['id']}", json={"allowed_models": []})
        assert patched.status_code == 200 and patched.json()["allowed_models"] == [] and patched.json()["rpm"] == 50
        again = await ci.post("/v1/chat/completions", json={"model": "gpt-4o", "messages": MESSAGES})
        assert again.status_code == 200


async def test_bad_budgets_are_400s_and_other_accounts_keys_404s(stack: Any, owner: httpx.AsyncClient) -> None:
    bad = await owner.post("/v1/account/budgets", json={"period": "year", "max_tokens": 5})
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
    empty = await owner.post("/v1/account/budgets", json={"period": "day"})
    assert empty.status_code == 400 and "max_spend_usd or max_tokens" in empty.json()["error"]["message"]
    async with http(stack, await new_account_key(stack, f"other-{asyncio.get_running_loop().time()}")) as other:
        theirs = (await other.get("/v1/account/keys")).json()["data"][0]["id"]
    foreign = await owner.post("/v1/account/budgets", json={"period": "day", "max_tokens": 5, "api_key_id": theirs})
    assert foreign.status_code == 404
    unknown = await owner.delete("/v1/account/budgets/00000000-0000-0000-0000-000000000001")
    assert unknown.status_code == 404


async def test_a_routing_string_picks_only_among_the_keys_allowed_models(stack: Any, owner: httpx.AsyncClient) -> None:
    created = await owner.post("/v1/account/keys", json={"name": "narrow", "allowed_models": ["gpt-4o-mini"]})
    narrow = created.json()
    created = await owner.post("/v1/account/keys", json={"name": "none", "allowed_models": ["no-such-model"]})
    nothing = created.json()
    body = {"model": "orqen/cheap", "messages": MESSAGES}
    async with http(stack, narrow["key"]) as client:
        answered = await client.post("/v1/chat/completions", json=body)
    # The edge lets the routing string through; dispatch keeps its pick to the allowed models.
    assert answered.status_code == 200 and answered.headers["x-orqen-model"] == "gpt-4o-mini"
    async with http(stack, nothing["key"]) as client:
        refused = await client.post("/v1/chat/completions", json=body)
    assert refused.status_code == 403
    assert refused.json()["error"]["message"] == "No model 'orqen/cheap' would pick is allowed for this API key."
