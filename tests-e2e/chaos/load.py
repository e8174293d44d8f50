"""A steady chat load over the three ingresses, recording every answer a client got.

Requests go over plain HTTP with httpx (the SDKs' wire formats, without their retries, so a
failure is seen as it happened): OpenAI's /v1/chat/completions, Anthropic's /v1/messages and
Bedrock's /model/{id}/converse(-stream), streaming and not, every other request with tools
(which the optimizer plans) and every request in one of a few sessions (X-Orqen-Session-Id).
Each ingress talks to a different fake provider, so a fault in one path shows as such.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

INGRESSES = ("openai", "anthropic", "bedrock")
# One model per ingress, each answered by a different fake provider.
MODELS = {
    "openai": "gpt-4o-mini",
    "anthropic": "claude-sonnet-4-6",
    "bedrock": "anthropic.claude-3-haiku-20240307-v1:0",
}
SESSIONS = 12
# An answer slower than this is a hang as far as a client is concerned.
HANG_SECONDS = 10.0
_TOOL = {
    "name": "get_weather",
    "description": "The current weather in a city.",
    "schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
# A client that got no answer (the edge down) waits this long before its next request, as SDKs back off.
_RETRY_PAUSE = 0.1
# How each format's stream says it ended well: a stream cut short (the edge killed under it) lacks it.
# Bedrock's messageStop comes with the last content, before the usage: its stream ends with metadata.
_STREAM_END = {"openai": b"data: [DONE]", "anthropic": b"message_stop", "bedrock": b"metadata"}
# An error after the first byte, in the stream (an SSE error event, a Bedrock exception frame).
_STREAM_ERROR = {"openai": b'data: {"error"', "anthropic": b"event: error", "bedrock": b"exception"}


@dataclass(frozen=True, slots=True)
class Answer:
    """What one request got, as its client saw it."""

    ingress: str
    stream: bool
    tools: bool
    session_id: str
    # HTTP status; 0 when no answer came (connection refused or reset, or the client's timeout).
    status: int
    # X-Request-ID of the answer ("" without an answer).
    request_id: str
    # time.monotonic() when it was sent, and how long the answer took to its last byte.
    sent_at: float
    seconds: float
    # A 200 whose stream ended as its format ends a stream (always True when not streaming).
    complete: bool
    # An error answer whose body is the caller's SDK error shape (False for 200s and no answers).
    sdk_shape: bool
    error: str = ""
    # A 200 stream that ended with its format's error event (a failure after the first byte, said in-band).
    stream_error: bool = False

    @property
    def answered_at(self) -> float:
        return self.sent_at + self.seconds

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.complete


def request_of(ingress: str, stream: bool, tools: bool, n: int) -> tuple[str, dict[str, Any]]:
    """The path and JSON body of request number `n` in an SDK's own format."""
    text = f'call get_weather {{"city": "city {n}"}}' if tools else f"hello {n}"
    model = MODELS[ingress]
    if ingress == "openai":
        body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 50}
        if tools:
            function = {"name": _TOOL["name"], "description": _TOOL["description"], "parameters": _TOOL["schema"]}
            body["tools"] = [{"type": "function", "function": function}]
        if stream:
            body |= {"stream": True, "stream_options": {"include_usage": True}}
        return "/v1/chat/completions", body
    if ingress == "anthropic":
        body = {"model": model, "max_tokens": 50, "messages": [{"role": "user", "content": text}], "stream": stream}
        if tools:
            body["tools"] = [
                {"name": _TOOL["name"], "description": _TOOL["description"], "input_schema": _TOOL["schema"]}
            ]
        return "/v1/messages", body
    body = {"messages": [{"role": "user", "content": [{"text": text}]}], "inferenceConfig": {"maxTokens": 50}}
    if tools:
        spec = {"name": _TOOL["name"], "description": _TOOL["description"], "inputSchema": {"json": _TOOL["schema"]}}
        body["toolConfig"] = {"tools": [{"toolSpec": spec}]}
    return f"/model/{model}/{'converse-stream' if stream else 'converse'}", body


def in_sdk_shape(ingress: str, response: httpx.Response) -> bool:
    """Whether an error answer is the caller's SDK error body (and, for Bedrock, its error-type header)."""
    try:
        body = json.loads(response.content)
    except ValueError:
        return False
    if not isinstance(body, dict):
        return False
    if ingress == "openai":
        error = body.get("error")
        return isinstance(error, dict) and isinstance(error.get("message"), str) and isinstance(error.get("type"), str)
    if ingress == "anthropic":
        error = body.get("error")
        return body.get("type") == "error" and isinstance(error, dict) and isinstance(error.get("type"), str)
    return isinstance(body.get("message"), str) and bool(response.headers.get("x-amzn-errortype"))


class Load:
    """`workers` clients sending requests back to back, round-robin over ingress, streaming and tools."""

    def __init__(self, edge_url: str, api_key: str, workers: int = 8, timeout: float = 60.0) -> None:
        self.answers: list[Answer] = []
        self._edge_url = edge_url
        self._api_key = api_key
        self._workers = workers
        self._timeout = timeout
        self._numbers = itertools.count()

    async def run(self, done: Callable[[int], bool]) -> list[Answer]:
        """Send until `done(requests sent so far)` is true, then return every answer."""
        limits = httpx.Limits(max_connections=self._workers, max_keepalive_connections=self._workers)
        async with httpx.AsyncClient(base_url=self._edge_url, timeout=self._timeout, limits=limits) as http:
            await asyncio.gather(*(self._worker(http, done) for _ in range(self._workers)))
        return self.answers

    async def _worker(self, http: httpx.AsyncClient, done: Callable[[int], bool]) -> None:
        while not done(len(self.answers)):
            n = next(self._numbers)
            # Periods 3, 2 and 2 cover every (ingress, stream, tools) combination every 12 requests.
            ingress, stream, tools = INGRESSES[n % 3], n % 2 == 1, (n // 2) % 2 == 1
            answer = await self.send(http, ingress, stream, tools, n)
            self.answers.append(answer)
            if answer.status == 0:
                await asyncio.sleep(_RETRY_PAUSE)

    async def send(self, http: httpx.AsyncClient, ingress: str, stream: bool, tools: bool, n: int) -> Answer:
        path, body = request_of(ingress, stream, tools, n)
        session_id = f"chaos-session-{n % SESSIONS}"
        headers = {
            "authorization": f"Bearer {self._api_key}",
            "x-orqen-session-id": session_id,
            "anthropic-version": "2023-06-01",
        }
        sent_at = time.monotonic()
        status, request_id, complete, sdk_shape, error, stream_error = 0, "", False, False, "", False
        try:
            async with http.stream("POST", path, json=body, headers=headers) as response:
                status, request_id = response.status_code, response.headers.get("x-request-id", "")
                content = await response.aread()
            if status == 200:
                stream_error = stream and _STREAM_ERROR[ingress] in content
                complete = not stream or (_STREAM_END[ingress] in content and not stream_error)
            else:
                sdk_shape = in_sdk_shape(ingress, response)
                error = content[:200].decode(errors="replace")
        except httpx.HTTPError as err:
            error = f"{type(err).__name__}: {err}"
        return Answer(
            ingress, stream, tools, session_id, status, request_id, sent_at, time.monotonic() - sent_at, complete,
            sdk_shape, error, stream_error,
        )  # fmt: skip
