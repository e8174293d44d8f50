"""OpenAI ingress: POST /v1/chat/completions, JSON or SSE. The canonical shape is OpenAI's own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
from litestar import Request, Response, post
from litestar.di import NamedDependency

from orqen_common.context import Principal
from orqen_common.errors import OrqenError
from orqen_common.proxy_families import ORQ_BASES
from orqen_edge.errors import error_body
from orqen_edge.ingress.pipeline import Reply, serve_chat
from orqen_edge.runtime import Runtime


@post(
    ["/v1/chat/completions", *(f"{base}/chat/completions" for base in ORQ_BASES)],
    summary="Chat completions (OpenAI SDK; also under the Orq.ai-compatible bases)",
    status_code=200,
)
async def chat_completions(
    request: Request[Any, Any, Any], runtime: NamedDependency[Runtime], principal: NamedDependency[Principal]
) -> Response[Any]:
    return await serve_chat(request, runtime, principal, "openai", translate)


def translate(body: Any) -> tuple[dict[str, Any], Reply]:
    """The body is already canonical; the reply only needs to know about include_usage."""
    include_usage = False
    if isinstance(body, dict) and isinstance(body.get("stream_options"), dict):
        include_usage = bool(body["stream_options"].get("include_usage"))
    return body, OpenAIReply(include_usage)


class OpenAIReply:
    stream_media_type = "text/event-stream"

    def __init__(self, include_usage: bool) -> None:
        self._include_usage = include_usage

    def body(self, completion: dict[str, Any]) -> bytes:
        for choice in completion.get("choices") or ():
            choice.pop("stop_sequence", None)
        return orjson.dumps(completion)

    async def stream(self, chunks: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
        """SSE chunks ending in [DONE]; the usage chunk only when the caller asked for it."""
        async for chunk in chunks:
            if chunk.get("usage") and not self._include_usage:
                if not chunk.get("choices"):
                    continue
                chunk = {k: v for k, v in chunk.items() if k != "usage"}
            for choice in chunk.get("choices") or ():
                choice.pop("stop_sequence", None)
            yield b"data: " + orjson.dumps(chunk) + b"\n\n"
        yield b"data: [DONE]\n\n"

    def stream_error(self, err: OrqenError) -> bytes:
        return b"data: " + orjson.dumps(error_body(err, "openai")) + b"\n\n"
