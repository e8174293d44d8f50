"""The outermost ASGI layer: request id, tracing span, metrics, access log."""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import structlog
from opentelemetry import propagate, trace
from prometheus_client import Counter, Histogram

from orqen_common.context import REQUEST_ID_HEADER, bind_request_id, new_request_id

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[..., Awaitable[None]]

HTTP_REQUESTS = Counter("orqen_http_requests_total", "HTTP requests served.", ["method", "route", "status"])
HTTP_LATENCY = Histogram("orqen_http_duration_seconds", "HTTP request duration.", ["method", "route"])

# A caller-supplied request id is kept only when it is short and harmless in logs.
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_QUIET = ("/healthz", "/readyz", "/metrics")

log = structlog.get_logger("orqen_edge.access")


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self._tracer = trace.get_tracer(__name__)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        incoming = headers.get(REQUEST_ID_HEADER, "")
        request_id = incoming if _VALID_REQUEST_ID.match(incoming) else new_request_id()
        structlog.contextvars.clear_contextvars()
        bind_request_id(request_id)
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        with self._tracer.start_as_current_span(
            f"{scope['method']} {scope['path']}", context=propagate.extract(headers), kind=trace.SpanKind.SERVER
        ):
            try:
                await self._app(scope, receive, send_with_id)
            finally:
                route = scope.get("path_template") or "unmatched"
                elapsed = time.perf_counter() - started
                HTTP_REQUESTS.labels(scope["method"], route, str(status)).inc()
                HTTP_LATENCY.labels(scope["method"], route).observe(elapsed)
                if scope["path"] not in _QUIET:
                    log.info(
                        "request",
                        method=scope["method"],
                        path=scope["path"],
                        status=status,
                        ms=round(elapsed * 1000, 1),
                    )
