"""The real edge app on real Redis and NATS with every gRPC service down.

Shows bad input answered in OpenAI's shape and a missing downstream reported as 503,
by /readyz too, with no stack trace ever reaching the client.
"""

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from orqen_edge.app import create_app
from orqen_edge.middleware import RequestContextMiddleware
from orqen_stack.embedded import ChildProcessServer, start_nats
from orqen_testing.servers import frozen

from .conftest import OpenRuntime

KEY = "sk-orq-edge-test-key"
HEADERS = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
async def client(open_runtime: OpenRuntime) -> AsyncIterator[httpx.AsyncClient]:
    runtime = await open_runtime(KEY, max_body_bytes=64 * 1024)
    # The ASGI transport runs the app on this test's event loop, where its channels live.
    transport = httpx.ASGITransport(app=RequestContextMiddleware(create_app(runtime)))
    async with httpx.AsyncClient(transport=transport, base_url="http://edge") as test_client:
        yield test_client


async def test_a_missing_dispatch_is_a_clear_503(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/chat/completions", content=orjson.dumps(CHAT), headers=HEADERS)
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["type"] == "service_unavailable_error" and "dispatch" in error["message"]


async def test_readyz_names_what_is_not_ready(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["not_ready"] == ["accounting", "billing", "dispatch", "optimizer"]
    assert body["checks"]["redis"] == "ok"


@pytest.fixture
def private_nats(tmp_path: Path) -> Iterator[ChildProcessServer]:
    """A NATS server of this test's own, to freeze."""
    with start_nats(tmp_path / "nats") as server:
        yield server


async def test_readyz_asks_nats_rather_than_trusting_an_open_connection(
    private_nats: ChildProcessServer, open_runtime: OpenRuntime
) -> None:
    runtime = await open_runtime(KEY, nats_url=private_nats.url)
    transport = httpx.ASGITransport(app=RequestContextMiddleware(create_app(runtime)))
    async with httpx.AsyncClient(transport=transport, base_url="http://edge") as client:

        async def nats_check() -> str:
            response = await client.get("/readyz")
            return str(response.json()["checks"]["nats"])

        assert await nats_check() == "ok"
        with frozen(private_nats.pid):  # its connections stay open, nothing answers
            assert runtime.publisher.connected
            assert await nats_check() == "unavailable"
            response = await client.get("/readyz")
            assert response.status_code == 503 and "nats" in response.json()["not_ready"]
        for _ in range(100):  # thawed: ready again, without a reconnect
            if await nats_check() == "ok":
                break
            await asyncio.sleep(0.1)
        assert await nats_check() == "ok"


async def test_an_unverifiable_key_is_503_not_401(client: httpx.AsyncClient) -> None:
    headers = {**HEADERS, "authorization": "Bearer sk-orq-not-cached"}
    response = await client.post("/v1/chat/completions", content=orjson.dumps(CHAT), headers=headers)
    assert response.status_code == 503 and "accounting" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("headers", "body", "status", "type_"),
    [
        ({"content-type": "application/json"}, orjson.dumps(CHAT), 401, "authentication_error"),
        ({**HEADERS, "authorization": "Basic abc"}, orjson.dumps(CHAT), 401, "authentication_error"),
        (HEADERS, b'{"model": ', 400, "invalid_request_error"),
        (HEADERS, b'{"model": "m"}', 400, "invalid_request_error"),
        ({**HEADERS, "content-type": "text/plain"}, orjson.dumps(CHAT), 415, "invalid_request_error"),
    ],
)
# 413 is shown over real HTTP in tests-e2e: httpx's in-process ASGI transport does not
# finish a request whose body the app refused half-read.
async def test_bad_input_gets_an_openai_shaped_error(
    client: httpx.AsyncClient, headers: dict[str, str], body: bytes, status: int, type_: str
) -> None:
    response = await client.post("/v1/chat/completions", content=body, headers=headers)
    assert response.status_code == status
    assert response.json()["error"]["type"] == type_
    assert response.headers["x-request-id"].startswith("req_")


async def test_unknown_routes_and_methods_are_json(client: httpx.AsyncClient) -> None:
    missing = await client.get("/v1/nope")
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"
    wrong = await client.get("/v1/chat/completions")
    assert wrong.status_code == 405 and "error" in wrong.json()


async def test_a_callers_request_id_is_kept(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz", headers={"x-request-id": "my-trace-123"})
    assert response.headers["x-request-id"] == "my-trace-123"
    hostile = await client.get("/healthz", headers={"x-request-id": "bad id\nwith newline"})
    assert hostile.headers["x-request-id"].startswith("req_")


async def test_openapi_and_metrics_are_served(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/schema/openapi.json")).json()
    assert "/v1/chat/completions" in spec["paths"] and "/v1/account/requests" in spec["paths"]
    await client.get("/healthz")
    metrics = (await client.get("/metrics")).text
    assert 'orqen_http_requests_total{method="GET",route="/healthz",status="200"}' in metrics


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        # Once read by a lenient conversion as a Unix time in 1970: an empty page instead of a 400.
        ({"until": "0.5"}, "until"),
        ({"since": "yesterday"}, "since"),
        ({"since": "0001-01-01T00:00:00+10:00"}, "since"),
        ({"limit": "ten"}, "limit"),
        ({"limit": "0"}, "limit"),
        ({"status": "maybe"}, "status"),
    ],
)
async def test_a_malformed_query_value_is_a_400_that_names_the_parameter(
    client: httpx.AsyncClient, query: dict[str, str], parameter: str
) -> None:
    response = await client.get("/v1/account/requests", params=query, headers=HEADERS)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and f"query parameter '{parameter}'" in error["message"], error


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        # Out of int32 range: once a ValueError (500) when the preferences message was built.
        ("PUT", "/v1/account/routing/preferences", {"k_floor": 2**40}, "$.k_floor"),
        # Once turned into the model name "1".
        ("PUT", "/v1/account/routing/preferences", {"fallback_models": [1]}, "$.fallback_models[0]"),
        ("POST", "/v1/account/routing/models/toggle", {"model": "m", "enabled": "yes"}, "$.enabled"),
        ("POST", "/v1/account/providers", {"provider": "openai", "api_key": 5}, "$.api_key"),
        ("POST", "/v1/account/keys", {"name": "n" * 101}, "$.name"),
    ],
)
async def test_an_account_body_that_does_not_fit_its_type_is_a_400_naming_the_field(
    client: httpx.AsyncClient, method: str, path: str, body: dict[str, object], field: str
) -> None:
    response = await client.request(method, path, content=orjson.dumps(body), headers=HEADERS)
    assert response.status_code == 400, response.text
    assert f"at `{field}`" in response.json()["error"]["message"]
