"""The stateless proxy families over HTTP, under /v1 and the Orq.ai-compatible /v2/proxy and /v3/router.

Each request is authenticated and rate limited like chat, then handed to dispatch's Proxy
call as it is read (orqen_edge.proxy.upload); the answer streams back with the upstream's
status and content type, byte for byte. No chat optimization runs. The request event is
published once, after the last byte, with ingress "proxy/<family>" and the usage the
upstream reported.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import orjson
from litestar import Request, Response, post
from litestar.di import NamedDependency
from litestar.handlers import HTTPRouteHandler
from litestar.response import Stream
from litestar.types import Empty

from orqen.v1 import dispatch_pb2
from orqen_common.context import Principal
from orqen_common.errors import OrqenError, invalid_request
from orqen_common.proxy_families import FAMILIES, ProxyFamily, ingress, paths
from orqen_edge.budgets import admit_call
from orqen_edge.caller_text import checked_model
from orqen_edge.completion_event import publish_after_last_byte
from orqen_edge.errors import error_body
from orqen_edge.ingress.pipeline import PROVIDER_KEY_HEADER, SESSION_HEADER, ChatCall, new_call, pop_credentials
from orqen_edge.openapi import API_KEY, PROVIDER, errors
from orqen_edge.proxy.upload import Opening, open_json, open_multipart
from orqen_edge.runtime import Runtime


def route_handlers() -> list[HTTPRouteHandler]:
    """One POST handler per family, on every path that serves it."""
    return [_handler(entry) for entry in FAMILIES]


def _handler(entry: ProxyFamily) -> HTTPRouteHandler:
    async def proxied(
        request: Request[Any, Any, Any], runtime: NamedDependency[Runtime], principal: NamedDependency[Principal]
    ) -> Response[Any]:
        return await serve_proxy(request, runtime, principal, entry)

    return post(
        paths(entry),
        name=f"proxy:{entry.name}",
        summary=f"/{entry.name} via upstream proxy ({entry.body} body)",
        status_code=200,
        security=API_KEY,
        responses=errors(*PROVIDER),
        # Uploads are bounded by ORQEN_MAX_UPLOAD_BYTES while they stream, not read whole first.
        request_max_body_size=None if entry.body == "multipart" else Empty,
    )(proxied)


async def serve_proxy(
    request: Request[Any, Any, Any], runtime: Runtime, principal: Principal, entry: ProxyFamily
) -> Response[Any]:
    """Forward one proxied request; the request event is published exactly once."""
    call = new_call(
        runtime, principal, request.state.request_id, ingress(entry), request.headers.get(SESSION_HEADER, "")
    )
    try:
        if entry.body == "json":
            opening = await open_json(request)
        else:
            opening = await open_multipart(
                request.headers.get("content-type", ""), request.stream(), runtime.settings.max_upload_bytes
            )
        if entry.model_required and not opening.model:
            raise invalid_request(f"'model' is required for /v1/{entry.name}.")
        if opening.model:
            checked_model(opening.model)
        call.model_requested, call.stream = opening.model, opening.stream
        call.admission = await admit_call(runtime.limit_policies, runtime.rate_limiter, principal, opening.model)
        # Only the X-Orqen-Provider-Key header: the aws_* body extensions are chat's (Bedrock has no family here).
        call.credentials = pop_credentials(None, request.headers.get(PROVIDER_KEY_HEADER))
        replies = runtime.downstream.proxy(_frames(call, entry, opening))
        head = await _answer_head(replies)
    except OrqenError as err:
        call.record(err.http_status, err.message)
        await call.charge_tokens()  # releases what the request held of its budgets
        raise
    call.summary.provider, call.summary.model = head.provider, head.model
    event_stream = head.content_type.startswith("text/event-stream")
    call.stream = call.stream or event_stream
    headers = call.headers()
    if event_stream:
        headers.update({"cache-control": "no-cache", "x-accel-buffering": "no"})
    body = publish_after_last_byte(call, _body(call, replies), _event_stream_error if event_stream else None)
    return Stream(body, status_code=head.status, media_type=head.content_type, headers=headers)


async def _frames(
    call: ChatCall, entry: ProxyFamily, opening: Opening
) -> AsyncIterator[dispatch_pb2.ProxyRequestFrame]:
    head = dispatch_pb2.ProxyHead(
        context=call.context,
        family=entry.name,
        model=opening.model,
        body_kind=entry.body,
        credentials=call.credentials,
    )
    yield dispatch_pb2.ProxyRequestFrame(head=head)
    async for frame in opening.frames:
        yield frame


async def _answer_head(replies: AsyncIterator[dispatch_pb2.ProxyResponseFrame]) -> dispatch_pb2.ProxyResponseHead:
    """The answer's status and content type: dispatch sends them before any byte."""
    try:
        first = await anext(replies)
    except StopAsyncIteration:
        first = dispatch_pb2.ProxyResponseFrame()
    if first.WhichOneof("frame") != "head":
        raise OrqenError.of(grpc.StatusCode.UNAVAILABLE, "Dispatch ended the proxied call without an answer.")
    return first.head


async def _body(call: ChatCall, replies: AsyncIterator[dispatch_pb2.ProxyResponseFrame]) -> AsyncIterator[bytes]:
    """The answer's bytes as they come; the summary that follows them is kept on the call."""
    async for frame in replies:
        if frame.WhichOneof("frame") == "body_chunk":
            yield frame.body_chunk
        elif frame.WhichOneof("frame") == "summary":
            call.summary = frame.summary


def _event_stream_error(err: OrqenError) -> bytes:
    """The error event that ends an event stream cut after its first byte (OpenAI's shape)."""
    return b"event: error\ndata: " + orjson.dumps(error_body(err, "openai")) + b"\n\n"
