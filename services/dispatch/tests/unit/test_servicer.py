"""How a provider's failure reaches the caller."""

import pytest

from orqen_dispatch.summary import caller_status


@pytest.mark.parametrize(
    ("upstream", "caller"),
    [(400, 400), (401, 401), (404, 404), (429, 429), (500, 502), (502, 502), (503, 503), (529, 503), (504, 504)],
)
def test_provider_failures_reach_the_caller_with_a_gateway_status(upstream: int, caller: int) -> None:
    assert caller_status(upstream) == caller
