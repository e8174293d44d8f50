"""Tools: per tool, how often requests offered it, Orqen forwarded it, the model called it, and how
those requests ended (accounting's tool-health report, the account API's `/v1/account/tools/health`)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import get
from litestar.di import NamedDependency
from litestar.params import QueryParameter
from litestar.response import Template

from orqen_edge.account.responses import plain
from orqen_edge.dashboard.session_store import DashboardSession
from orqen_edge.dashboard.web import chart, page
from orqen_edge.runtime import Runtime

PERIODS = (7, 30, 90)
_LIMIT = 200
_CHARTED = 12


@get("/dashboard/tools")
async def tools_page(
    runtime: NamedDependency[Runtime],
    session: NamedDependency[DashboardSession],
    days: Annotated[int, QueryParameter(ge=1, le=366)] = 30,
) -> Template:
    found = await runtime.downstream.get_tool_health(session.account_id, days, _LIMIT)
    tools = [plain(t) for t in found.tools]
    return page(
        "tools.html",
        session,
        active="tools",
        tools=tools,
        days=found.days or days,
        periods=PERIODS,
        chart=_chart(tools[:_CHARTED]),
    )


def _chart(tools: list[dict[str, Any]]) -> dict[str, Any]:
    """The most offered tools: offered, forwarded, called, and requests that failed."""
    series = (("offered", "offered"), ("forwarded", "forwarded"), ("called", "called"), ("errors", "failed requests"))
    datasets = [{"label": label, "data": [t[field] for t in tools]} for field, label in series]
    # Counts of requests: whole numbers on the axis.
    return chart("bar", [t["name"] for t in tools], datasets, indexAxis="y", scales={"x": {"ticks": {"precision": 0}}})


ROUTES = (tools_page,)
