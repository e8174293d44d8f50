import datetime as dt

from orqen_billing.metering import Period, projected_charge_cents
from orqen_billing.settings import Plan

PRO = Plan(base_cents=4900, included_tokens=20_000_000, overage_cents_per_million=200)


def test_period_is_the_calendar_month() -> None:
    period = Period.month_of(dt.datetime(2026, 2, 14, 12, tzinfo=dt.UTC))
    assert period.start == dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
    assert period.end == dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    assert 0.45 < period.elapsed_fraction(dt.datetime(2026, 2, 14, 12, tzinfo=dt.UTC)) < 0.5


def test_usage_within_the_plan_costs_the_base_price() -> None:
    assert projected_charge_cents(PRO, 5_000_000, 0.5) == 4900


def test_overage_is_charged_on_the_projected_month() -> None:
    # 15M tokens at mid-month projects to 30M: 10M over, at 200 cents per million.
    assert projected_charge_cents(PRO, 15_000_000, 0.5) == 4900 + 2000
