"""Which budgets and limits apply to a caller, the allowed-models check, and UTC calendar periods."""

import datetime as dt

import pytest

from orqen.v1 import accounting_pb2
from orqen_common.budget_period import period_end, period_start
from orqen_common.context import Principal
from orqen_common.errors import OrqenError
from orqen_edge.budgets import caller_limits, check_model_allowed
from orqen_edge.rate_limit import NO_LIMITS, SPEND, TOKENS

NOW = dt.datetime(2026, 12, 2, 21, 30, tzinfo=dt.UTC)  # a Wednesday
CI = Principal(kind="api_key", account_id="acct", api_key_id="ci")
LAPTOP = Principal(kind="api_key", account_id="acct", api_key_id="laptop")
POLICY = accounting_pb2.LimitPolicy(
    budgets=[
        accounting_pb2.BudgetDefinition(id="a", period="month", max_spend_usd=50, soft_percent=80),
        accounting_pb2.BudgetDefinition(id="k", api_key_id="ci", period="day", max_spend_usd=2, max_tokens=1000),
    ],
    keys=[accounting_pb2.ApiKeyLimits(api_key_id="ci", allowed_models=["gpt-4o-mini*", "anthropic/*"], rpm=7)],
    key_labels={"ci": "ci (sk-orq-AbCd...)", "laptop": "laptop (sk-orq-XyZw...)"},
)


@pytest.mark.parametrize(
    ("period", "start", "end"),
    [
        ("day", dt.datetime(2026, 12, 2, tzinfo=dt.UTC), dt.datetime(2026, 12, 3, tzinfo=dt.UTC)),
        ("week", dt.datetime(2026, 11, 30, tzinfo=dt.UTC), dt.datetime(2026, 12, 7, tzinfo=dt.UTC)),
        ("month", dt.datetime(2026, 12, 1, tzinfo=dt.UTC), dt.datetime(2027, 1, 1, tzinfo=dt.UTC)),
    ],
)
def test_periods_are_utc_calendar_periods(period: str, start: dt.datetime, end: dt.datetime) -> None:
    assert (period_start(period, NOW), period_end(period, NOW)) == (start, end)
    # A time given in another zone is the same instant.
    assert period_start(period, NOW.astimezone(dt.timezone(dt.timedelta(hours=5)))) == start


def test_a_key_gets_its_own_budgets_and_its_accounts_not_another_keys() -> None:
    limits = caller_limits(POLICY, CI, NOW)
    assert limits.key_rpm == 7 and limits.key_tpm == 0
    # A budget without soft_percent (accounting always stores one) warns only at its limit.
    assert [(p.budget_id, p.unit, p.limit, p.soft_limit) for p in limits.periods] == [
        ("a", SPEND, 50, 40),
        ("k", SPEND, 2, 2),
        ("k", TOKENS, 1000, 1000),
    ]
    assert {p.budget_id for p in caller_limits(POLICY, LAPTOP, NOW).periods} == {"a"}
    key_budget = limits.periods[1]
    assert key_budget.describe() == "the daily spend budget of API key 'ci (sk-orq-AbCd...)' ($2.00)"
    assert key_budget.redis_key.startswith("orqen:ratelimit:{acct}:budget:key:ci:day:")
    assert limits.periods[0].describe() == "the monthly spend budget of account ($50.00)"
    assert caller_limits(None, CI, NOW) is NO_LIMITS


def test_allowed_models_are_names_or_glob_patterns() -> None:
    for model in ("gpt-4o-mini", "gpt-4o-mini-2024-07-18", "anthropic/claude-sonnet-4-6"):
        check_model_allowed(POLICY, CI, model)
    check_model_allowed(POLICY, LAPTOP, "gpt-4o")  # a key without a list may use any model
    with pytest.raises(OrqenError) as refused:
        check_model_allowed(POLICY, CI, "gpt-4o")
    err = refused.value
    assert (err.http_status, err.kind.openai_type, err.code) == (403, "permission_error", "model_not_allowed")
    assert err.message == (
        "Model 'gpt-4o' is not allowed for API key 'ci (sk-orq-AbCd...)'; it may use: gpt-4o-mini*, anthropic/*."
    )
