"""Errors rendered in the caller's SDK shape, chosen by the route's ingress format.

The status mapping itself lives in orqen_common.errors; this module only draws bodies.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
import orjson
import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

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


# The error bodies, one Struct per SDK shape: the edge renders errors from them and the
# OpenAPI document describes its error responses with them (orqen_edge.openapi).


class OpenAIErrorDetail(msgspec.Struct):
    message: str
    type: str
    param: str | None
    code: str | None


class OpenAIError(msgspec.Struct):
    """OpenAI's error body: every route but /v1/messages and /model/... answers it."""

    error: OpenAIErrorDetail


class AnthropicErrorDetail(msgspec.Struct):
    type: str
    message: str


class AnthropicError(msgspec.Struct):
    """Anthropic's error body, on /v1/messages."""

    type: Literal["error"]
    error: AnthropicErrorDetail


class BedrockError(msgspec.Struct):
    """Bedrock's error body, on /model/...; the error code travels in `x-amzn-errortype`."""

    message: str


ErrorShape = OpenAIError | AnthropicError | BedrockError
ERROR_SHAPES: dict[str, type[ErrorShape]] = {
    "openai": OpenAIError,
    "anthropic": AnthropicError,
    "bedrock": BedrockError,
}


def error_shape(err: OrqenError, ingress: str) -> ErrorShape:
    if ingress == "anthropic":
        return AnthropicError("error", AnthropicErrorDetail(err.kind.anthropic_type, err.message))
    if ingress == "bedrock":
        return BedrockError(err.message)
    return OpenAIError(OpenAIErrorDetail(err.message, err.kind.openai_type, None, err.code))


def error_body(err: OrqenError, ingress: str) -> dict[str, Any]:
    body: dict[str, Any] = msgspec.to_builtins(error_shape(err, ingress))
    return body


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
    }.get(status) or (_invalid_parameters(exc) if isinstance(exc, ValidationException) else str(exc.detail))
    return error_response(OrqenError(kind_for_http(status), message, http_status=status), ingress_of(request.url.path))


# Where Litestar found a value that did not fit (its ParamType), as the message says it.
_SOURCES = {"query": "query ", "path": "path ", "header": "header ", "cookie": "cookie "}


def _invalid_parameters(exc: ValidationException) -> str:
    """Which parameters did not fit their declared types, by name ("Validation failed for ..." says neither)."""
    problems = [
        f"{_SOURCES.get(getattr(problem.get('source'), 'value', ''), '')}parameter '{problem['key']}': "
        f"{problem.get('message', 'invalid value')}"
        for problem in exc.extra or ()
        if isinstance(problem, dict) and "key" in problem
    ]
    return "Invalid " + "; ".join(problems) + "." if problems else str(exc.detail)


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
