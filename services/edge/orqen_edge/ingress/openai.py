"""OpenAI ingress: POST /v1/chat/completions, JSON or SSE. The canonical shape is OpenAI's own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from litestar import Request, Response, post
from msgspec import UNSET
from msgspec.structs import replace

from orqen_common.errors import OrqenError
from orqen_common.formats.openai import ChatCompletion, ChatCompletionChunk, ChatRequest, decode_request, encode
from orqen_common.proxy_families import ORQ_BASES
from orqen_edge.auth import chat_caller
from orqen_edge.errors import error_body
from orqen_edge.ingress.pipeline import Reply, serve_chat
from orqen_edge.openapi import API_KEY, PROVIDER, errors, json_body


@post(
    ["/v1/chat/completions", *(f"{base}/chat/completions" for base in ORQ_BASES)],
    summary="Chat completions (OpenAI SDK; also under the Orq.ai-compatible bases)",
    status_code=200,
    security=API_KEY,
    operation_class=json_body(ChatRequest),
    responses=errors(*PROVIDER),
)
async def chat_completions(request: Request[Any, Any, Any]) -> Response[Any]:
    return await serve_chat(request, *await chat_caller(request), "openai", translate)


def translate(body: bytes) -> tuple[ChatRequest, Reply]:
    """The body is already canonical; the reply only needs to know about include_usage."""
    chat = decode_request(body)
    include_usage = bool(chat.stream_options and chat.stream_options.include_usage)
    return chat, OpenAIReply(include_usage)


class OpenAIReply:
    stream_media_type = "text/event-stream"

    def __init__(self, include_usage: bool) -> None:
        self._include_usage = include_usage

    def body(self, completion: ChatCompletion) -> bytes:
        for choice in completion.choices:
            choice.stop_sequence = UNSET
        return encode(completion)

    async def stream(self, batches: AsyncIterator[list[ChatCompletionChunk]]) -> AsyncIterator[bytes]:
        """SSE chunks ending in [DONE]; the usage chunk only when the caller asked for it."""
        async for batch in batches:
            if events := [event for chunk in batch if (event := self._event(chunk))]:
                yield b"".join(events)
        yield b"data: [DONE]\n\n"

    def _event(self, chunk: ChatCompletionChunk) -> bytes:
        """The chunk's SSE event; none for the usage chunk the caller did not ask for."""
        if chunk.usage and not self._include_usage:
            if not chunk.choices:
                return b""
            chunk = replace(chunk, usage=UNSET)
        for choice in chunk.choices:
            choice.stop_sequence = UNSET
        return b"data: " + encode(chunk) + b"\n\n"

    def stream_error(self, err: OrqenError) -> bytes:
        return b"data: " + encode(error_body(err, "openai")) + b"\n\n"
