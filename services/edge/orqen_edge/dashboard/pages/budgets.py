"""Budgets: the account's and its keys' spend and token budgets with the current period's use, a
form that creates or replaces one, and deleting one; each active key's own limits (allowed models,
requests and tokens per minute), a form per key. Through the account API's own functions
(orqen_edge.account.budgets), so the limits and their checks are the API's."""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import Template

from orqen_edge.account.budgets import (
    BudgetInput,
    KeyLimits,
    budgets_in_use,
    remove_budget,
    save_budget,
    set_key_limits,
)
from orqen_edge.account.responses import plain
from orqen_edge.dashboard.forms import attempt, form_fields, form_struct
from orqen_edge.dashboard.session_store import DashboardSession
from orqen_edge.dashboard.web import form_answer, lookup, page
from orqen_edge.runtime import Runtime


async def _panel(runtime: Runtime, session: DashboardSession) -> dict[str, Any]:
    """The budgets with their use, and the active keys (a budget's scope, the form's choices, their own limits)."""
    listed, budgets = await asyncio.gather(
        runtime.downstream.list_api_keys(session.account_id), budgets_in_use(runtime, session.account_id)
    )
    active = [plain(k) for k in listed.keys if not k.HasField("revoked_at")]
    return {"budgets": budgets, "keys": {k["id"]: k["name"] or k["prefix"] for k in active}, "active_keys": active}


@get("/dashboard/budgets")
async def budgets_page(runtime: NamedDependency[Runtime], session: NamedDependency[DashboardSession]) -> Template:
    return page("budgets.html", session, active="budgets", **await _panel(runtime, session))


@post("/dashboard/budgets", status_code=200)
async def save(
    request: Request[Any, Any, Any], runtime: NamedDependency[Runtime], session: NamedDependency[DashboardSession]
) -> Response[Any]:
    """Creates the budget of the form's scope and period, or replaces its limits (one per scope and period)."""
    fields = await form_fields(request)
    _, error = await attempt(lambda: save_budget(runtime, session.account_id, form_struct(fields, BudgetInput)))
    answer = {"error": error, "saved": not error}
    return await form_answer(
        request, session, error, active="budgets", context=lambda: _panel(runtime, session), **answer
    )


@post("/dashboard/budgets/{budget_id:str}/delete", status_code=200)
async def delete(
    request: Request[Any, Any, Any],
    runtime: NamedDependency[Runtime],
    session: NamedDependency[DashboardSession],
    budget_id: FromPath[str],
) -> Response[Any]:
    """Deletes the budget at once: requests it refused are admitted again."""
    await lookup(remove_budget(runtime, session.account_id, budget_id))
    return await form_answer(request, session, None, active="budgets", context=lambda: _panel(runtime, session))


@post("/dashboard/budgets/keys/{key_id:str}", status_code=200)
async def key_limits(
    request: Request[Any, Any, Any],
    runtime: NamedDependency[Runtime],
    session: NamedDependency[DashboardSession],
    key_id: FromPath[str],
) -> Response[Any]:
    """Sets a key's limits as the form shows them whole: no models is every model, a blank rate the operator's."""
    fields = await form_fields(request)
    models = [m.strip() for m in fields.pop("allowed_models", "").split(",") if m.strip()]
    limits = {"rpm": "0", "tpm": "0", **fields, "allowed_models": models}
    _, error = await attempt(
        lambda: lookup(set_key_limits(runtime, session.account_id, key_id, form_struct(limits, KeyLimits)))
    )
    return await form_answer(
        request, session, error, active="budgets", context=lambda: _panel(runtime, session), key_error=error
    )


ROUTES = (budgets_page, save, delete, key_limits)
