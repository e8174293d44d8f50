"""Errors rendered in the caller's SDK shape, chosen by the route's ingress format.

The status mapping itself lives in orqen_common.errors; this module only draws bodies.
"""

from __future__ import annotations

from typing import Any

import orjson
import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException

from orqen_common.errors import INTERNAL, OrqenError, kind_for_http
from orqen_common.proxy_families import NOT_PROXIED, OPENAI_BASE, ORQ_BASES
from orqen_edge.rate_limit import RateLimitError

log = structlog.get_logger(__name__)


def ingress_of(path: str) -> str:
    """Which SDK shape a path speaks; everything not Anthropic or Bedrock speaks OpenAI's."""
    if path.startswith("/v1/messages"):
        return "anthropic"
    if path.startswith("/model/"):
        return "bedrock"
    return "openai"


def error_body(err: OrqenError, ingress: str) -> dict[str, Any]:
    if ingress == "anthropic":
        return {"type": "error", "error": {"type": err.kind.anthropic_type, "message": err.message}}
    if ingress == "bedrock":
        return {"message": err.message}
    return {"error": {"message": err.message, "type": err.kind.openai_type, "param": None, "code": err.code}}


def error_response(err: OrqenError, ingress: str) -> Response[bytes]:
    headers = {}
    if err.retry_after is not None:
        headers["retry-after"] = str(max(1, round(err.retry_after)))
    if isinstance(err, RateLimitError):
        headers.update(err.headers)
    if ingress == "bedrock":
        headers["x-amzn-errortype"] = err.kind.bedrock_code
    return Response(
        content=orjson.dumps(error_body(err, ingress)),
        status_code=err.http_status,
        media_type="application/json",
        headers=headers,
    )


def handle_orqen_error(request: Request[Any, Any, Any], err: OrqenError) -> Response[bytes]:
    return error_response(err, ingress_of(request.url.path))


def handle_http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    """Litestar's own errors (404, 405, 413, validation) in the SDK's shape."""
    status = exc.status_code
    message = {
        404: not_proxied_message(request.url.path) or f"Unknown route {request.method} {request.url.path}.",
        405: f"Method {request.method} is not allowed on {request.url.path}.",
        413: "Request body too large.",
    }.get(status, str(exc.detail))
    return error_response(OrqenError(kind_for_http(status), message, http_status=status), ingress_of(request.url.path))


def not_proxied_message(path: str) -> str | None:
    """Why an object-lifecycle path (files, batches, ...) answers 404, or None for another path."""
    for base in (OPENAI_BASE, *ORQ_BASES):
        name = path.removeprefix(base + "/").split("/", 1)[0] if path.startswith(base + "/") else ""
        if name in NOT_PROXIED:
            return (
                f"{base}/{name} is intentionally not proxied: object-lifecycle APIs (files, uploads, batches, "
                "vector stores, assistants, threads, containers, evals) need storage ownership and "
                "provider-specific lifecycle semantics, so Orqen does not pass them through. Call the provider "
                "directly for them; the stateless families (completions, embeddings, responses, images, audio, "
                "moderations, rerank, ocr, videos/generations) are proxied."
            )
    return None


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    """Never a stack trace to the client: log it, answer 500 with the request id."""
    log.exception("unhandled error", path=request.url.path)
    request_id = request.scope.get("state", {}).get("request_id", "")
    message = f"Internal error (request id {request_id})."
    return error_response(OrqenError(INTERNAL, message), ingress_of(request.url.path))
