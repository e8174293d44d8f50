"""Raw request rows outlive the longest budget period: a budget's use is summed from them."""

import pytest
from pydantic import ValidationError

from orqen_accounting.settings import MIN_RETENTION_DAYS, AccountingSettings


def _settings(days: int) -> AccountingSettings:
    return AccountingSettings(internal_token="t" * 32, request_retention_days=days)  # type: ignore[call-arg]


@pytest.mark.parametrize("days", [0, MIN_RETENTION_DAYS, 90])
def test_forever_or_a_month_and_more_is_accepted(days: int) -> None:
    assert _settings(days).request_retention_days == days


@pytest.mark.parametrize("days", [1, 7, 31])
def test_less_than_a_budget_month_is_refused_with_why(days: int) -> None:
    with pytest.raises(ValidationError, match="budgets are summed from the raw rows"):
        _settings(days)
