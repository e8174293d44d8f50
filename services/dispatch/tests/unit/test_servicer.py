"""How a provider's failure reaches the caller."""

import pytest

from orqen.v1 import common_pb2, dispatch_pb2
from orqen_dispatch.summary import DETAIL_BYTES, bounded_detail, caller_status


@pytest.mark.parametrize(
    ("upstream", "caller"),
    [(400, 400), (401, 401), (404, 404), (429, 429), (500, 502), (502, 502), (503, 503), (529, 503), (504, 504)],
)
def test_provider_failures_reach_the_caller_with_a_gateway_status(upstream: int, caller: int) -> None:
    assert caller_status(upstream) == caller


def test_the_summary_sent_with_an_error_fits_in_a_grpc_trailer_whatever_the_attempts() -> None:
    attempts = [
        common_pb2.Attempt(provider="openai", model=f"model-{i}", status=500, error="x" * 2000, reason="retry")
        for i in range(33)  # 11 targets, 3 calls each
    ]
    summary = dispatch_pb2.DispatchSummary(provider="openai", upstream_status=500, attempts=attempts)
    detail = bounded_detail(summary)
    assert len(detail) <= DETAIL_BYTES
    kept = dispatch_pb2.DispatchSummary.FromString(detail).attempts
    assert kept[0].model == "model-0" and kept[-1].model == "model-32" and kept[0].error.startswith("xxx")
    small = dispatch_pb2.DispatchSummary(attempts=attempts[:2])
    assert bounded_detail(small) == small.SerializeToString()
