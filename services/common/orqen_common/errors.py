"""One error table: gRPC status -> HTTP status -> each SDK's error type.

Servicers raise `OrqenError`; the gRPC interceptor turns it into a status with the
message; the edge turns a gRPC status back into an `OrqenError` and renders it in
the caller's SDK shape. Nothing else maps errors.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc


@dataclass(frozen=True, slots=True)
class ErrorKind:
    """How one failure class appears to each kind of caller."""

    grpc_code: grpc.StatusCode
    http_status: int
    openai_type: str
    anthropic_type: str
    bedrock_code: str


_KINDS = [
    ErrorKind(
        grpc.StatusCode.INVALID_ARGUMENT, 400, "invalid_request_error", "invalid_request_error", "ValidationException"
    ),
    ErrorKind(
        grpc.StatusCode.UNAUTHENTICATED,
        401,
        "authentication_error",
        "authentication_error",
        "UnrecognizedClientException",
    ),
    # The setup, not the request, stands in the way (e.g. a feature the operator did not enable).
    ErrorKind(
        grpc.StatusCode.FAILED_PRECONDITION,
        400,
        "invalid_request_error",
        "invalid_request_error",
        "ValidationException",
    ),
    ErrorKind(grpc.StatusCode.PERMISSION_DENIED, 403, "permission_error", "permission_error", "AccessDeniedException"),
    ErrorKind(grpc.StatusCode.NOT_FOUND, 404, "not_found_error", "not_found_error", "ResourceNotFoundException"),
    ErrorKind(grpc.StatusCode.ALREADY_EXISTS, 409, "conflict_error", "invalid_request_error", "ConflictException"),
    ErrorKind(grpc.StatusCode.RESOURCE_EXHAUSTED, 429, "rate_limit_error", "rate_limit_error", "ThrottlingException"),
    ErrorKind(grpc.StatusCode.UNIMPLEMENTED, 501, "not_implemented_error", "api_error", "ValidationException"),
    ErrorKind(
        grpc.StatusCode.UNAVAILABLE, 503, "service_unavailable_error", "overloaded_error", "ServiceUnavailableException"
    ),
    ErrorKind(grpc.StatusCode.DEADLINE_EXCEEDED, 504, "timeout_error", "api_error", "ModelTimeoutException"),
    ErrorKind(grpc.StatusCode.INTERNAL, 500, "api_error", "api_error", "InternalServerException"),
]
_BY_GRPC = {k.grpc_code: k for k in _KINDS}
_BY_HTTP: dict[int, ErrorKind] = {}
for _kind in _KINDS:
    _BY_HTTP.setdefault(_kind.http_status, _kind)  # the first row of a status is its kind
INTERNAL = _BY_GRPC[grpc.StatusCode.INTERNAL]


def kind_for_grpc(code: grpc.StatusCode) -> ErrorKind:
    """The error kind of a gRPC status; unlisted codes are internal errors."""
    return _BY_GRPC.get(code, INTERNAL)


def kind_for_http(status: int) -> ErrorKind:
    """The error kind of an HTTP status (an upstream's answer, or one of ours)."""
    if status in _BY_HTTP:
        return _BY_HTTP[status]
    if status in (408, 504):
        return _BY_GRPC[grpc.StatusCode.DEADLINE_EXCEEDED]
    if status in (413, 415, 422):
        return _BY_GRPC[grpc.StatusCode.INVALID_ARGUMENT]
    if status >= 500:
        return _BY_GRPC[grpc.StatusCode.UNAVAILABLE]
    if status >= 400:
        return _BY_GRPC[grpc.StatusCode.INVALID_ARGUMENT]
    return INTERNAL


class OrqenError(Exception):
    """A failure with a kind and a message that is safe to show the caller.

    `http_status` overrides the kind's status when it is more precise (413, 415).
    `retry_after` is carried to the caller's Retry-After header.
    `detail` is a serialized message for the calling service, never for the caller: what the
    failed call still has to report (dispatch: the DispatchSummary with every attempt made).
    """

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        http_status: int | None = None,
        retry_after: float | None = None,
        code: str | None = None,
        detail: bytes | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.http_status = http_status or kind.http_status
        self.retry_after = retry_after
        self.code = code
        self.detail = detail

    @classmethod
    def of(cls, code: grpc.StatusCode, message: str, **kw: object) -> OrqenError:
        return cls(kind_for_grpc(code), message, **kw)  # type: ignore[arg-type]


def invalid_request(message: str, *, http_status: int | None = None) -> OrqenError:
    return OrqenError.of(grpc.StatusCode.INVALID_ARGUMENT, message, http_status=http_status)


def unauthenticated(message: str) -> OrqenError:
    return OrqenError.of(grpc.StatusCode.UNAUTHENTICATED, message)


def not_found(message: str) -> OrqenError:
    return OrqenError.of(grpc.StatusCode.NOT_FOUND, message)


def unavailable(message: str) -> OrqenError:
    return OrqenError.of(grpc.StatusCode.UNAVAILABLE, message)


# gRPC trailing metadata that carries what the status code alone loses.
HTTP_STATUS_METADATA = "x-orqen-http-status"
RETRY_AFTER_METADATA = "retry-after"
DETAIL_METADATA = "x-orqen-detail-bin"  # binary: gRPC metadata keys ending in -bin carry bytes


def from_rpc_error(err: grpc.aio.AioRpcError, service: str) -> OrqenError:
    """Turn a failed call to `service` back into an OrqenError for the edge to render."""
    code = err.code()
    metadata = list(err.trailing_metadata() or ())
    trailers = {k: v for k, v in metadata if isinstance(v, str)}
    detail = next((v for k, v in metadata if k == DETAIL_METADATA and isinstance(v, bytes)), None)
    http_status = int(trailers[HTTP_STATUS_METADATA]) if HTTP_STATUS_METADATA in trailers else None
    retry_after = float(trailers[RETRY_AFTER_METADATA]) if RETRY_AFTER_METADATA in trailers else None
    if http_status is None:
        # Statuses without an HTTP status come from gRPC itself, not from a servicer.
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            return unavailable(f"The {service} service is unavailable; try again shortly.")
        if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
            return OrqenError(
                INTERNAL, f"The {service} service refused Orqen's internal credentials; check ORQEN_INTERNAL_TOKEN."
            )
    message = err.details() or code.name.lower()
    return OrqenError(kind_for_grpc(code), message, http_status=http_status, retry_after=retry_after, detail=detail)
