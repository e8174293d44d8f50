import grpc
import pytest

from orqen_common.errors import HTTP_STATUS_METADATA, RETRY_AFTER_METADATA, from_rpc_error, kind_for_http


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, grpc.StatusCode.INVALID_ARGUMENT),
        (401, grpc.StatusCode.UNAUTHENTICATED),
        (403, grpc.StatusCode.PERMISSION_DENIED),
        (404, grpc.StatusCode.NOT_FOUND),
        (413, grpc.StatusCode.INVALID_ARGUMENT),
        (429, grpc.StatusCode.RESOURCE_EXHAUSTED),
        (500, grpc.StatusCode.INTERNAL),
        (502, grpc.StatusCode.UNAVAILABLE),
        (503, grpc.StatusCode.UNAVAILABLE),
        (504, grpc.StatusCode.DEADLINE_EXCEEDED),
    ],
)
def test_http_status_maps_to_one_grpc_code(status: int, code: grpc.StatusCode) -> None:
    assert kind_for_http(status).grpc_code == code


def _rpc_error(code: grpc.StatusCode, details: str, trailers: tuple[tuple[str, str], ...] = ()) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailers), details)


def test_servicer_error_keeps_its_http_status_and_retry_after() -> None:
    err = from_rpc_error(
        _rpc_error(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "slow down",
            ((HTTP_STATUS_METADATA, "429"), (RETRY_AFTER_METADATA, "7")),
        ),
        "dispatch",
    )
    assert (err.http_status, err.retry_after, err.message) == (429, 7.0, "slow down")
    assert err.kind.openai_type == "rate_limit_error"


def test_unreachable_service_is_503_naming_the_service() -> None:
    err = from_rpc_error(_rpc_error(grpc.StatusCode.UNAVAILABLE, "connect failed"), "dispatch")
    assert err.http_status == 503
    assert "dispatch" in err.message


def test_rejected_internal_credentials_are_not_the_callers_fault() -> None:
    err = from_rpc_error(_rpc_error(grpc.StatusCode.UNAUTHENTICATED, "bad token"), "accounting")
    assert err.http_status == 500
    assert "ORQEN_INTERNAL_TOKEN" in err.message
