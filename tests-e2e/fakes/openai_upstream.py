"""A fake OpenAI Chat Completions endpoint that validates requests with the openai SDK's own types.

Model names steer the fake: `fake-429` and `fake-500` answer with those errors,
`fake-broken-stream` stops a stream halfway. Everything else answers with an echo of
the last user message. Every request it accepted is kept in `requests` for tests.
"""

from __future__ import annotations

import time
import typing
from dataclasses import dataclass, field
from typing import Any

import orjson
from litestar import Litestar, Request, Response, post
from litestar.response import Stream
from openai.types.chat import completion_create_params as params
from pydantic import TypeAdapter

from fakes.wire import validate_typed_dict

_ADAPTER: TypeAdapter[Any] = TypeAdapter(params.CompletionCreateParamsBase)
_ALLOWED = set(typing.get_type_hints(params.CompletionCreateParamsBase)) | {"stream"}


@dataclass
class FakeOpenAI:
    api_key: str
    requests: list[dict[str, Any]] = field(default_factory=list)

    def app(self) -> Litestar:
        fake = self

        @post("/v1/chat/completions", status_code=200)
        async def chat(request: Request[Any, Any, Any]) -> Response[Any]:
            if request.headers.get("authorization") != f"Bearer {fake.api_key}":
                return _error(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
            if request.headers.get("content-type", "").split(";")[0] != "application/json":
                return _error(415, "Content-Type must be application/json", "invalid_request_error")
            body = orjson.loads(await request.body())
            problem = validate_typed_dict(_ADAPTER, _ALLOWED, body)
            if problem is None and "stream" in body and not isinstance(body["stream"], bool):
                problem = "stream must be a boolean"
            if problem is not None:
                return _error(400, f"Invalid request: {problem}", "invalid_request_error")
            fake.requests.append({"headers": dict(request.headers), "body": body})
            model = body["model"]
            if model == "fake-429":
                return _error(
                    429, "Rate limit reached for requests", "requests", "rate_limit_exceeded", {"retry-after": "7"}
                )
            if model == "fake-500":
                return _error(500, "The server had an error while processing your request.", "server_error")
            reply = "echo: " + _last_user_text(body["messages"])
            usage = _usage(body["messages"], reply)
            if body.get("stream"):
                include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
                return Stream(_sse(model, reply, usage, include_usage), media_type="text/event-stream")
            return Response(_completion(model, reply, usage), media_type="application/json")

        return Litestar([chat], logging_config=None)


def _error(
    status: int, message: str, type_: str, code: str | None = None, headers: dict[str, str] | None = None
) -> Response[Any]:
    body = {"error": {"message": message, "type": type_, "param": None, "code": code}}
    return Response(body, status_code=status, headers=headers or {})


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message["role"] == "user":
            content = message["content"]
            if isinstance(content, str):
                return content
            return " ".join(part.get("text", "") for part in content if part.get("type") == "text")
    return ""


def _usage(messages: list[dict[str, Any]], reply: str) -> dict[str, Any]:
    prompt = sum(len(orjson.dumps(m)) for m in messages) // 4 + 1
    completion = len(reply.split())
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0},
    }


def _completion(model: str, reply: str, usage: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop", "logprobs": None}
        ],
        "usage": usage,
    }


async def _sse(model: str, reply: str, usage: dict[str, Any], include_usage: bool):  # type: ignore[no-untyped-def]
    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        payload = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
        }
        return b"data: " + orjson.dumps(payload) + b"\n\n"

    yield chunk({"role": "assistant", "content": ""})
    words = reply.split(" ")
    for i, word in enumerate(words):
        if model == "fake-broken-stream" and i == len(words) // 2:
            raise RuntimeError("upstream connection dropped")
        yield chunk({"content": word if i == 0 else " " + word})
    yield chunk({}, "stop")
    if include_usage:
        payload = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "choices": [],
            "usage": usage,
        }
        yield b"data: " + orjson.dumps(payload) + b"\n\n"
    yield b"data: [DONE]\n\n"
