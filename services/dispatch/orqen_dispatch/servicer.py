"""The orqen.v1.Dispatch gRPC service: pick the provider, call it, summarise what happened."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import orjson

from orqen.v1 import common_pb2, dispatch_pb2, dispatch_pb2_grpc
from orqen_common.context import account_scope
from orqen_common.errors import OrqenError, invalid_request, kind_for_http
from orqen_common.grpc_server import ServicerContext
from orqen_dispatch.providers.base import Provider, StreamState, UpstreamError, UpstreamUsage
from orqen_dispatch.router import ProviderRouter


class DispatchServicer(dispatch_pb2_grpc.DispatchServicer):
    def __init__(self, router: ProviderRouter) -> None:
        self._router = router

    async def Complete(
        self, request: dispatch_pb2.CompleteRequest, context: ServicerContext
    ) -> dispatch_pb2.CompleteResponse:
        account_scope(request.context.account_id)
        chat = _parse(request.chat_json)
        provider, model = self._router.resolve(chat["model"])
        started = time.perf_counter()
        try:
            completion = await provider.complete(chat, model, request.credentials)
        except UpstreamError as err:
            raise _as_orqen_error(provider, err) from None
        elapsed = _ms_since(started)
        return dispatch_pb2.CompleteResponse(
            response_json=orjson.dumps(completion.body),
            summary=_summary(
                provider, completion.body.get("model") or model, completion.usage, completion.status, elapsed, elapsed
            ),
        )

    async def Stream(
        self, request: dispatch_pb2.CompleteRequest, context: ServicerContext
    ) -> AsyncIterator[dispatch_pb2.StreamEvent]:
        account_scope(request.context.account_id)
        chat = _parse(request.chat_json)
        provider, model = self._router.resolve(chat["model"])
        state = StreamState()
        started = time.perf_counter()
        ttft = 0.0
        model_used = model
        try:
            async for chunk in provider.stream(chat, model, request.credentials, state):
                if not ttft:
                    ttft = _ms_since(started)
                model_used = chunk.get("model") or model_used
                yield dispatch_pb2.StreamEvent(chunk_json=orjson.dumps(chunk))
        except UpstreamError as err:
            raise _as_orqen_error(provider, err) from None
        yield dispatch_pb2.StreamEvent(
            summary=_summary(provider, model_used, state.usage, state.status, _ms_since(started), ttft)
        )


def _parse(chat_json: bytes) -> dict[str, Any]:
    try:
        chat = orjson.loads(chat_json)
    except orjson.JSONDecodeError:
        raise invalid_request("chat_json is not valid JSON.") from None
    if not isinstance(chat, dict) or not isinstance(chat.get("model"), str) or not chat["model"]:
        raise invalid_request("chat_json must be a chat request object with a model.")
    return chat


def _as_orqen_error(provider: Provider, err: UpstreamError) -> OrqenError:
    status = caller_status(err.status)
    return OrqenError(
        kind_for_http(status),
        f"Upstream provider {provider.name} returned {err.status}: {err.message}",
        http_status=status,
        retry_after=err.retry_after,
    )


def caller_status(upstream: int) -> int:
    """The HTTP status the caller sees for a provider's failure.

    Client errors and throttling keep the provider's status (the caller can act on them);
    a provider's own failure is a bad gateway to the caller, never a bare 500 that would
    read as Orqen's; overloaded (503, Anthropic's 529) and timeouts keep their meaning.
    """
    if upstream < 500:
        return upstream
    if upstream in (503, 529):
        return 503
    if upstream == 504:
        return 504
    return 502


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _summary(
    provider: Provider, model: str, usage: UpstreamUsage, status: int, upstream_ms: float, ttft_ms: float
) -> dispatch_pb2.DispatchSummary:
    return dispatch_pb2.DispatchSummary(
        provider=provider.name,
        model=model,
        usage=common_pb2.Usage(
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cached_input_tokens=usage.cached_input_tokens,
        ),
        upstream_status=status,
        upstream_ms=upstream_ms,
        ttft_ms=ttft_ms,
        attempts=[dispatch_pb2.Attempt(provider=provider.name, model=model, status=status, duration_ms=upstream_ms)],
    )
