"""The official OpenAI SDK against the running stack: the README's examples, end to end."""

import asyncio
from typing import Any

import httpx
import openai
import pytest

from harness import request_log_entry


def _client(stack: Any, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.info.edge_url + "/v1", api_key=key or stack.info.api_key, max_retries=0)


async def _logged(stack: Any, request_id: str) -> dict[str, Any]:
    return await request_log_entry(stack.info.edge_url, stack.info.api_key, request_id)


async def test_chat_completion_is_forwarded_answered_and_logged(stack: Any) -> None:
    raw = await asyncio.to_thread(
        _client(stack).chat.completions.with_raw_response.create,
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hello gateway"}],
        extra_body={"aws_region_name": "eu-west-1"},
        extra_headers={"X-Orqen-Session-Id": "session-42"},
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "echo: hello gateway"
    request_id = raw.headers["x-request-id"]
    sent = stack.upstream.requests[-1]
    assert sent["headers"]["authorization"] == "Bearer sk-upstream-e2e"
    assert "aws_region_name" not in sent["body"]  # the fake also rejects unknown fields
    row = await _logged(stack, request_id)
    assert (row["status"], row["model_used"], row["session_id"], row["stream"]) == (
        200,
        "gpt-4o-mini",
        "session-42",
        False,
    )
    assert row["input_tokens"] == completion.usage.prompt_tokens and row["output_tokens"] == 7


async def test_streaming_passes_chunks_and_usage(stack: Any) -> None:
    def run() -> tuple[list[Any], str]:
        with _client(stack).chat.completions.with_streaming_response.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "one two three"}],
            stream=True,
            stream_options={"include_usage": True},
        ) as response:
            return list(response.parse()), response.headers["x-request-id"]

    chunks, request_id = await asyncio.to_thread(run)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: one two three"
    assert len(chunks) >= 5  # chunk by chunk, not one buffered answer
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 7
    row = await _logged(stack, request_id)
    assert row["stream"] is True and row["output_tokens"] == 7 and row["ttft_ms"] > 0


async def test_wrong_key_is_an_authentication_error_that_never_reaches_upstream(stack: Any) -> None:
    before = len(stack.upstream.requests)
    with pytest.raises(openai.AuthenticationError):
        await asyncio.to_thread(
            _client(stack, "sk-orq-not-a-key").chat.completions.create,
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "x"}],
        )
    assert len(stack.upstream.requests) == before


async def test_upstream_rate_limit_reaches_the_sdk_with_retry_after(stack: Any) -> None:
    with pytest.raises(openai.RateLimitError) as err:
        await asyncio.to_thread(
            _client(stack).chat.completions.create, model="fake-429", messages=[{"role": "user", "content": "x"}]
        )
    assert err.value.response.headers["retry-after"] == "7"


async def test_bad_input_never_reaches_upstream(stack: Any) -> None:
    before = len(stack.upstream.requests)
    headers = {"authorization": f"Bearer {stack.info.api_key}", "content-type": "application/json"}
    async with httpx.AsyncClient(base_url=stack.info.edge_url) as http:
        assert (await http.post("/v1/chat/completions", content=b"{oops", headers=headers)).status_code == 400
        big = b'{"model": "m", "messages": [], "pad": "' + b"x" * 300_000 + b'"}'
        assert (await http.post("/v1/chat/completions", content=big, headers=headers)).status_code == 413
        plain = {**headers, "content-type": "text/plain"}
        assert (await http.post("/v1/chat/completions", content=b"{}", headers=plain)).status_code == 415
        assert (await http.get("/v1/nothing-here")).json()["error"]["type"] == "not_found_error"
    assert len(stack.upstream.requests) == before


async def test_probes_metrics_openapi_and_tls(stack: Any) -> None:
    async with httpx.AsyncClient(base_url=stack.info.edge_url) as http:
        ready = await http.get("/readyz")
        assert ready.status_code == 200 and set(ready.json()["checks"]) >= {"dispatch", "accounting", "redis", "nats"}
        assert "orqen_http_requests_total" in (await http.get("/metrics")).text
        assert "/v1/chat/completions" in (await http.get("/schema/openapi.json")).json()["paths"]
    async with httpx.AsyncClient(base_url=stack.info.tls_url, verify=str(stack.info.cert_path)) as https:
        assert (await https.get("/healthz")).status_code == 200
