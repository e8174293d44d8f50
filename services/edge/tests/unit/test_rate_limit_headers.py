"""How rate-limit state becomes OpenAI's x-ratelimit-* headers, and how a 429 is drawn for each SDK."""

import orjson
import pytest

from orqen_edge.errors import error_response
from orqen_edge.rate_limit import (
    ACCOUNT_SCOPE,
    API_KEY_SCOPE,
    REQUESTS,
    TOKENS,
    Budget,
    BudgetState,
    RateLimitError,
    format_duration,
    rate_limit_headers,
)


def _state(scope: str, unit: str, limit: int, used: float) -> BudgetState:
    return BudgetState(Budget(scope, unit, limit, f"test:{scope}:{unit}"), used)


@pytest.mark.parametrize(
    ("seconds", "rendered"),
    [
        (0, "0s"),
        (-3, "0s"),
        (0.017, "17ms"),
        (0.0004, "1ms"),  # rounded up: "0s" would promise a budget that is not back yet
        (1, "1s"),
        (12, "12s"),
        (8.5, "8.5s"),
        (60 / 7, "8.572s"),
        (60, "1m0s"),
        (90.25, "1m30.25s"),
        (360, "6m0s"),
        (3723, "1h2m3s"),
    ],
)
def test_durations_are_written_like_openais_reset_headers(seconds: float, rendered: str) -> None:
    assert format_duration(seconds) == rendered


def test_no_configured_limit_means_no_headers() -> None:
    assert rate_limit_headers([]) == {}


def test_only_the_configured_units_are_reported() -> None:
    headers = rate_limit_headers([_state(API_KEY_SCOPE, REQUESTS, 60, 1)])
    assert headers == {
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-remaining-requests": "59",
        "x-ratelimit-reset-requests": "1s",
    }


def test_the_tighter_of_key_and_account_is_reported_per_unit() -> None:
    headers = rate_limit_headers(
        [
            _state(API_KEY_SCOPE, REQUESTS, 60, 12),  # 48 left
            _state(ACCOUNT_SCOPE, REQUESTS, 100, 90),  # 10 left: tighter although larger
            _state(API_KEY_SCOPE, TOKENS, 10_000, 2_500),  # 7500 left: tighter
            _state(ACCOUNT_SCOPE, TOKENS, 1_000_000, 0),
        ]
    )
    assert headers == {
        "x-ratelimit-limit-requests": "100",
        "x-ratelimit-remaining-requests": "10",
        "x-ratelimit-reset-requests": "54s",  # 90 requests drain at 100 a minute
        "x-ratelimit-limit-tokens": "10000",
        "x-ratelimit-remaining-tokens": "7500",
        "x-ratelimit-reset-tokens": "15s",
    }


def test_an_overdrawn_token_budget_reports_zero_left_and_the_whole_wait() -> None:
    headers = rate_limit_headers([_state(ACCOUNT_SCOPE, TOKENS, 1_000, 1_500)])
    assert headers["x-ratelimit-remaining-tokens"] == "0"
    assert headers["x-ratelimit-reset-tokens"] == "1m30s"


def test_fractional_use_rounds_remaining_down() -> None:
    # A drained bucket holds fractions of a unit; a fraction is not a request.
    assert rate_limit_headers([_state(API_KEY_SCOPE, REQUESTS, 10, 2.4)])["x-ratelimit-remaining-requests"] == "7"


def test_budget_waits() -> None:
    state = _state(API_KEY_SCOPE, TOKENS, 100, 150)
    assert state.seconds_until(1) == pytest.approx(30.6)
    assert state.reset_seconds == pytest.approx(90)
    assert _state(API_KEY_SCOPE, REQUESTS, 10, 3).seconds_until(1) == 0


MESSAGE = "Rate limit reached for API key: 60 requests per minute."
_LIMIT_HEADERS = {
    "x-ratelimit-limit-requests": "60",
    "x-ratelimit-remaining-requests": "0",
    "x-ratelimit-reset-requests": "1m0s",
    "retry-after-ms": "1000",
}


@pytest.mark.parametrize(
    ("ingress", "body", "error_type"),
    [
        (
            "openai",
            {"error": {"message": MESSAGE, "type": "rate_limit_error", "param": None, "code": "rate_limit_exceeded"}},
            None,
        ),
        ("anthropic", {"type": "error", "error": {"type": "rate_limit_error", "message": MESSAGE}}, None),
        ("bedrock", {"message": MESSAGE}, "ThrottlingException"),
    ],
)
def test_a_429_carries_retry_after_and_the_limit_headers_in_every_sdk_shape(
    ingress: str, body: dict[str, object], error_type: str | None
) -> None:
    err = RateLimitError(MESSAGE, 1.0, _LIMIT_HEADERS)
    response = error_response(err, ingress)
    assert response.status_code == 429
    assert orjson.loads(response.content) == body
    headers = dict(response.headers)
    assert headers["retry-after"] == "1"
    assert {k: headers[k] for k in _LIMIT_HEADERS} == _LIMIT_HEADERS
    assert headers.get("x-amzn-errortype") == error_type
