"""What a dispatched call tells the edge: its summary for headers and the request log, or its error."""

from __future__ import annotations

import time
from collections.abc import Sequence

from orqen.v1 import common_pb2, dispatch_pb2
from orqen_common.canonical import TokenUsage
from orqen_common.errors import OrqenError, kind_for_http
from orqen_dispatch.providers.base import UpstreamError
from orqen_dispatch.resilience import AttemptRecord, DispatchFailedError, Target


def as_orqen_error(
    err: UpstreamError, target: Target | None = None, *, summary: dispatch_pb2.DispatchSummary | None = None
) -> OrqenError:
    """The error the edge renders for a provider's failure; `summary` (every attempt made) goes with it."""
    if isinstance(err, DispatchFailedError):
        target = err.target
    status = caller_status(err.status)
    where = f"Upstream provider {target.provider.name}" if target is not None else "The upstream provider"
    return OrqenError(
        kind_for_http(status),
        f"{where} returned {err.status}: {err.message}",
        http_status=status,
        retry_after=err.retry_after,
        detail=bounded_detail(summary) if summary is not None else None,
    )


# gRPC fails a call whose metadata passes 8 KB, and the status message shares it: the summary
# that goes with an error (a trailer) keeps to half of that, cutting its attempts' messages first.
DETAIL_BYTES = 4096
_ATTEMPT_ERROR_CHARS = 120


def bounded_detail(summary: dispatch_pb2.DispatchSummary) -> bytes:
    """The summary as the error's detail, at most DETAIL_BYTES: long messages cut, then middle attempts left out."""
    detail = summary.SerializeToString()
    if len(detail) <= DETAIL_BYTES:
        return detail
    for attempt in summary.attempts:
        attempt.error = attempt.error[:_ATTEMPT_ERROR_CHARS]
    while len(detail := summary.SerializeToString()) > DETAIL_BYTES and len(summary.attempts) > 2:
        del summary.attempts[len(summary.attempts) // 2]  # the first and the last calls say the most
    return detail


def caller_status(upstream: int) -> int:
    """The HTTP status the caller sees for a provider's failure.

    Client errors and throttling keep the provider's status (the caller can act on them);
    a provider's own failure is a bad gateway to the caller, never a bare 500 that would
    read as Orqen's; overloaded (503, Anthropic's 529) and timeouts keep their meaning.
    """
    if upstream < 500:
        return upstream if upstream >= 400 else 502
    if upstream in (503, 529):
        return 503
    if upstream == 504:
        return 504
    return 502


def summary(
    target: Target,
    model: str,
    usage: TokenUsage,
    status: int,
    upstream_ms: float,
    ttft_ms: float,
    attempts: Sequence[AttemptRecord],
) -> dispatch_pb2.DispatchSummary:
    return dispatch_pb2.DispatchSummary(
        provider=target.provider.name,
        model=model,
        usage=common_pb2.Usage(
            input_tokens=usage.prompt,
            output_tokens=usage.output,
            cached_input_tokens=usage.cache_read,
            cache_write_input_tokens=usage.cache_write,
        ),
        upstream_status=status,
        upstream_ms=upstream_ms,
        ttft_ms=ttft_ms,
        route_reason=target.reason,
        attempts=[
            common_pb2.Attempt(
                provider=a.provider,
                model=a.model,
                status=a.status,
                error=a.error,
                duration_ms=a.duration_ms,
                reason=a.reason,
                deployment=a.deployment,
            )
            for a in attempts
        ],
    )


def ms_since(started: float) -> float:
    """Milliseconds since `started` (a time.perf_counter() reading)."""
    return (time.perf_counter() - started) * 1000
