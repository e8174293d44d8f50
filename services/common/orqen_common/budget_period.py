"""Budget periods: UTC calendar days, weeks (from Monday) and months.

The edge keys its Redis counters by the start of the current period, so counters reset on their
own when a period ends; accounting sums the ledger from the same start.
"""

from __future__ import annotations

import datetime as dt

PERIODS = ("day", "week", "month")


def period_start(period: str, now: dt.datetime) -> dt.datetime:
    """The start (UTC midnight) of the `period` that contains `now`; ValueError for an unknown period."""
    day = now.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day
    if period == "week":
        return day - dt.timedelta(days=day.weekday())
    if period == "month":
        return day.replace(day=1)
    raise ValueError(f"unknown budget period {period!r}; expected one of {', '.join(PERIODS)}")


def period_end(period: str, now: dt.datetime) -> dt.datetime:
    """When the `period` that contains `now` ends, which is when its budget resets."""
    start = period_start(period, now)
    if period == "day":
        return start + dt.timedelta(days=1)
    if period == "week":
        return start + dt.timedelta(days=7)
    return (start + dt.timedelta(days=32)).replace(day=1)
