"""OpenAI ingress: POST /v1/chat/completions, JSON or SSE. The canonical shape is OpenAI's own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
from litestar import Request, Response, post
from litestar.di import NamedDependency
from litestar.response import Stream

from orqen_common.context import Principal
from orqen_common.errors import OrqenError
from orqen_edge.errors import error_body
from orqen_edge.pipeline import ChatCall, complete, new_call, open_stream, pop_credentials, validate_chat
from orqen_edge.request_body import read_json
from orqen_edge.runtime import Runtime

SESSION_HEADER = "x-orqen-session-id"


@post("/v1/chat/completions", summary="Chat completions (OpenAI SDK)", status_code=200)
async def chat_completions(
    request: Request[Any, Any, Any], runtime: NamedDependency[Runtime], principal: NamedDependency[Principal]
) -> Response[Any]:
    call = new_call(runtime, principal, request.state.request_id, "openai", request.headers.get(SESSION_HEADER, ""), {})
    try:
        chat = validate_chat(await read_json(request))
        call.model_requested, call.stream = chat["model"], bool(chat.get("stream"))
        pop_credentials(chat)
        if call.stream:
            chunks = await open_stream(call, chat)
            return Stream(_sse(call, chunks), media_type="text/event-stream", headers=_stream_headers(call))
        completion = await complete(call, chat)
    except OrqenError as err:
        call.record(err.http_status, err.message)
        raise
    call.record(200)
    return Response(content=orjson.dumps(completion), media_type="application/json", headers=call.headers())


def _stream_headers(call: ChatCall) -> dict[str, str]:
    return {**call.headers(), "cache-control": "no-cache", "x-accel-buffering": "no"}


async def _sse(call: ChatCall, chunks: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    """Canonical chunks as OpenAI SSE; an error after the first byte becomes an error event."""
    status, error = 499, "client disconnected"
    try:
        async for chunk in chunks:
            yield b"data: " + orjson.dumps(chunk) + b"\n\n"
        yield b"data: [DONE]\n\n"
        status, error = 200, ""
    except OrqenError as err:
        status, error = err.http_status, err.message
        yield b"data: " + orjson.dumps(error_body(err, "openai")) + b"\n\n"
    finally:
        call.record(status, error)
