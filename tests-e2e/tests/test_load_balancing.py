"""Load balancing through the running stack: an account spreads one model over two base URLs.

Two fake OpenAI-compatible upstreams of the test's own stand for two deployments (the account
saves each as a provider, then the model's deployments through the provider API). One starts
answering 429 with a Retry-After of two minutes: every request is still answered, the throttled
deployment is ejected for that long after its first 429, and the request log and the routing
status say so. (Probing back after the cooling period is shown on the fake clock in
services/dispatch/tests/integration/test_balancing_http.py.)
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import openai
import pytest

from accounts import http, logged, new_account_key, remember_secret
from fakes.openai_upstream import FakeOpenAI
from fakes.scenario import Fault
from fakes.serve import BackgroundServer
from orqen.v1 import accounting_pb2, accounting_pb2_grpc
from orqen_common.grpc_client import open_channel

POOL_KEY = "sk-pool-upstream-key"
PASSWORD = remember_secret("owner password", "balance-owner-password-0123")
UPSTREAM_MODEL = "llama-3.3-70b"


@pytest.fixture(scope="module")
def pools() -> Iterator[dict[str, tuple[FakeOpenAI, str]]]:
    a, b = FakeOpenAI(POOL_KEY), FakeOpenAI(POOL_KEY)
    with BackgroundServer(a.app()) as server_a, BackgroundServer(b.app()) as server_b:
        yield {"a": (a, server_a.url + "/v1"), "b": (b, server_b.url + "/v1")}


@pytest.fixture
def name() -> str:
    """The test account's name; its dashboard owner is NAME@example.test."""
    return f"balance-{uuid.uuid4()}"


@pytest.fixture
async def owner(stack: Any, pools: dict[str, tuple[FakeOpenAI, str]], name: str) -> AsyncIterator[httpx.AsyncClient]:
    """An API-key client of an account that saved both upstreams as its providers pool-a and pool-b."""
    env = stack.service_env
    async with open_channel(env["ORQEN_ACCOUNTING_ADDR"], env["ORQEN_INTERNAL_TOKEN"]) as channel:
        stub = accounting_pb2_grpc.AccountingStub(channel)
        account = await stub.EnsureAccount(accounting_pb2.EnsureAccountRequest(name=name), timeout=10)
        await stub.CreateOwner(
            accounting_pb2.CreateOwnerRequest(account_id=account.id, email=f"{name}@example.test", password=PASSWORD),
            timeout=10,
        )
    async with http(stack, await new_account_key(stack, name)) as client:
        for name, (_, base_url) in pools.items():
            saved = await client.post(
                "/v1/account/providers", json={"provider": f"pool-{name}", "api_key": POOL_KEY, "base_url": base_url}
            )
            assert saved.status_code == 200, saved.text
        yield client
    for fake, _ in pools.values():
        fake.faults.calm()
        fake.requests.clear()


async def test_a_model_spread_over_two_deployments_survives_one_failing(
    stack: Any, owner: httpx.AsyncClient, pools: dict[str, tuple[FakeOpenAI, str]], name: str
) -> None:
    deployments = [
        {"name": "a", "provider": "pool-a", "model": UPSTREAM_MODEL, "weight": 1},
        {"name": "b", "provider": "pool-b", "model": UPSTREAM_MODEL, "weight": 1, "rpm": 1000},
    ]
    saved = await owner.put("/v1/account/providers/deployments/llama-pool", json={"deployments": deployments})
    assert saved.status_code == 200, saved.text
    assert saved.json()["strategy"] == "weighted" and [d["name"] for d in saved.json()["deployments"]] == ["a", "b"]
    listed = await owner.get("/v1/account/providers/deployments")
    assert [m["model"] for m in listed.json()["data"]] == ["llama-pool"]

    fake_a, fake_b = pools["a"][0], pools["b"][0]
    client = openai.AsyncOpenAI(
        base_url=str(owner.base_url) + "/v1", api_key=owner.headers["authorization"][7:], max_retries=0
    )
    answers = [
        await client.chat.completions.with_raw_response.create(
            model="llama-pool", messages=[{"role": "user", "content": f"hello {i}"}]
        )
        for i in range(20)
    ]
    assert len(fake_a.requests) + len(fake_b.requests) == 20
    assert 3 <= len(fake_b.requests) <= 17  # both take a share of the traffic
    assert all(r["body"]["model"] == UPSTREAM_MODEL for r in fake_a.requests + fake_b.requests)

    fake_b.faults.storm([Fault(error_status=429, retry_after=120)])
    b_before = len(fake_b.requests)
    answers = [
        await client.chat.completions.with_raw_response.create(
            model="llama-pool", messages=[{"role": "user", "content": "hello"}]
        )
        for _ in range(20)
    ]
    assert all(a.parse().choices[0].message.content == "echo: hello" for a in answers)
    # b was throttled once and ejected for its Retry-After: the other 19 never reached it.
    assert len(fake_b.requests) - b_before == 1
    logs = [await logged(owner, a.headers["x-request-id"]) for a in answers]
    trails = [[(t["deployment"], t["status"], t["reason"]) for t in entry["attempts"]] for entry in logs]
    assert trails.count([("b", 429, "requested"), ("a", 200, "failover")]) == 1
    assert trails.count([("a", 200, "requested")]) == 19
    assert all(entry["provider"] == "pool-a" for entry in logs)

    status = await owner.get("/v1/account/routing/models/status")
    (pool,) = [m for m in status.json()["data"] if m["id"] == "llama-pool"]
    assert pool["balance_strategy"] == "weighted"
    by_name = {d["name"]: d for d in pool["deployments"]}
    assert by_name["b"]["state"] == "ejected" and by_name["b"]["ejected_until"].endswith("Z")
    assert by_name["a"]["ejected_until"] is None
    assert by_name["a"]["state"] == "healthy" and by_name["a"]["in_flight"] == 0
    assert (by_name["b"]["rpm"], by_name["b"]["source"]) == (1000, "account")
    assert by_name["a"]["calls"] >= 1 and by_name["a"]["latency_ms"] > 0

    # The dashboard shows the same, and names the deployment of each attempt of a request.
    async with httpx.AsyncClient(base_url=str(owner.base_url), timeout=30) as browser:
        login = await browser.post("/v1/dashboard/login", json={"email": f"{name}@example.test", "password": PASSWORD})
        assert login.status_code == 200, login.text
        page = (await browser.get("/dashboard/routing")).text
        failed_over = next(e for e in logs if len(e["attempts"]) == 2)
        request_page = (await browser.get(f"/dashboard/requests/{failed_over['request_id']}")).text
    assert page.count('data-deployment="llama-pool/') == 2
    row_b = page.split('data-deployment="llama-pool/b"')[1].split("</tr>")[0]
    assert "pool-b" in row_b and "ejected" in row_b and "until" in row_b
    assert "deployment b" in request_page and "deployment a" in request_page


async def test_deployments_are_validated_and_deleted_in_the_callers_error_shape(owner: httpx.AsyncClient) -> None:
    for body, field in (
        ({"deployments": []}, "deployments"),
        ({"deployments": [{"name": "a", "provider": "pool-a", "weight": 0}]}, "weight"),
        ({"deployments": [{"name": "a", "provider": "pool-a"}], "strategy": "random"}, "strategy"),
        ({"deployments": [{"name": "a", "provider": "pool-a"}, {"name": "a", "provider": "pool-b"}]}, "same name"),
        ({"deployments": [{"name": "a", "provider": "pool-a", "region": "us-east-1"}]}, "region"),
    ):
        refused = await owner.put("/v1/account/providers/deployments/llama-bad", json=body)
        assert refused.status_code == 400, refused.text
        error = refused.json()["error"]
        assert error["type"] == "invalid_request_error" and field in error["message"], error
    saved = await owner.put(
        "/v1/account/providers/deployments/llama-gone", json={"deployments": [{"name": "a", "provider": "pool-a"}]}
    )
    assert saved.status_code == 200, saved.text
    assert (await owner.delete("/v1/account/providers/deployments/llama-gone")).json() == {
        "model": "llama-gone",
        "deleted": True,
    }
    assert (await owner.delete("/v1/account/providers/deployments/llama-gone")).status_code == 404
    assert (await owner.get("/v1/account/providers/deployments")).json()["data"] == []
