"""Overview: this month's traffic, cost and savings, the projected charge, and 30 days of charts."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from litestar import get
from litestar.di import NamedDependency
from litestar.response import Redirect, Template

from orqen.v1 import usage_pb2
from orqen_edge.account.responses import plain
from orqen_edge.account.usage import savings_by_kind
from orqen_edge.dashboard.session_store import DashboardSession
from orqen_edge.dashboard.web import PREFIX, chart, page
from orqen_edge.runtime import Runtime

_CHART_DAYS = 30
_TOP_MODELS = 8


def _day_label(iso_date: str) -> str:
    return iso_date[5:]  # "2026-12-02" -> "12-02": the year is the same on every bar but one


def _model_label(model: usage_pb2.ModelSavings) -> str:
    name = model.model or "(unknown)"
    return f"{name} ({model.unpriced_requests:,} price unknown)" if model.unpriced_requests else name


def _charts(
    daily: usage_pb2.UsageDaily, analytics: usage_pb2.AnalyticsDaily, by_model: usage_pb2.SavingsBreakdown
) -> dict[str, dict[str, Any]]:
    # Days without requests have no success rate or latency: gaps, not zeros.
    served = list(analytics.data)
    top = sorted(by_model.models, key=lambda m: m.cost_usd, reverse=True)[:_TOP_MODELS]
    return {
        "saved": chart(
            "bar",
            [_day_label(d.date) for d in daily.data],
            [{"label": "Tokens saved", "data": [d.totals.tokens_saved for d in daily.data]}],
        ),
        "requests": chart(
            "bar",
            [_day_label(d.date) for d in served],
            [
                {"label": "Requests", "data": [d.requests for d in served], "yAxisID": "y"},
                {
                    "type": "line",
                    "label": "Success rate (%)",
                    "data": [round(d.success_rate * 100, 1) if d.requests else None for d in served],
                    "yAxisID": "rate",
                },
            ],
            scales={"y": {"beginAtZero": True}, "rate": {"position": "right", "min": 0, "max": 100}},
        ),
        "latency": chart(
            "line",
            [_day_label(d.date) for d in served],
            [
                {"label": "p50 (ms)", "data": [round(d.latency.p50_ms) if d.requests else None for d in served]},
                {"label": "p95 (ms)", "data": [round(d.latency.p95_ms) if d.requests else None for d in served]},
            ],
            scales={"y": {"beginAtZero": True}},
        ),
        "models": chart(
            "bar",
            [_model_label(m) for m in top],
            # A model none of whose requests has a known price has no bar, never a $0 one.
            [
                {
                    "label": "Cost (USD)",
                    "data": [None if m.unpriced_requests == m.requests else round(m.cost_usd, 6) for m in top],
                }
            ],
            indexAxis="y",
        ),
    }


@get(PREFIX, include_in_schema=False)
async def overview(runtime: NamedDependency[Runtime], session: NamedDependency[DashboardSession]) -> Template:
    account = session.account_id
    downstream = runtime.downstream
    # The month so far is the last `today.day` days, today included (the savings call counts in days).
    month_days = dt.datetime.now(dt.UTC).day
    summary, month_savings, billing, daily, analytics, by_model = await asyncio.gather(
        downstream.get_usage_summary(account),
        downstream.get_savings(account, month_days),
        downstream.get_billing(account),
        downstream.get_usage_daily(account, _CHART_DAYS),
        downstream.get_analytics_daily(account, _CHART_DAYS),
        downstream.get_savings(account, _CHART_DAYS),
    )
    return page(
        "overview.html",
        session,
        active="overview",
        month=plain(summary),
        totals=plain(summary.totals),
        saved=savings_by_kind(month_savings),
        billing=plain(billing),
        charts=_charts(daily, analytics, by_model),
        chart_days=_CHART_DAYS,
    )


@get("/", include_in_schema=False)
async def root() -> Redirect:
    """The stack's URL opens the dashboard."""
    return Redirect(PREFIX, status_code=303)


ROUTES = (overview, root)
