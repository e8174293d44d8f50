"""Account API: budgets (spend and tokens per UTC day, week or month, of the account or one of its
keys) listed with their current use, and each key's allowed models and per-minute limits.

Definitions live in accounting; the current use is the ledger's, raised to the live Redis counter
where that is ahead (requests the ledger has not stored yet). A change holds on this replica at
once and on every other within ORQEN_BUDGET_POLICY_TTL_SECONDS.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from msgspec import Meta

from orqen.v1 import accounting_pb2
from orqen_common.context import Principal
from orqen_edge.account.responses import plain
from orqen_edge.budgets import period_budgets
from orqen_edge.openapi import API_KEY, AUTHENTICATED, BODY, errors, json_body
from orqen_edge.rate_limit import SPEND
from orqen_edge.request_body import read_struct
from orqen_edge.runtime import Runtime

ModelPatterns = Annotated[
    list[Annotated[str, Meta(min_length=1, max_length=200)]],
    Meta(max_length=100, description="Model names or glob patterns (`gpt-4o*`, `anthropic/*`); empty: every model."),
]
PerMinute = Annotated[int, Meta(ge=0, le=1_000_000_000)]


class KeyLimits(msgspec.Struct, forbid_unknown_fields=True):
    """A key's own limits; a field left out keeps its current value."""

    allowed_models: ModelPatterns | None = None
    rpm: Annotated[PerMinute, Meta(description="Requests per minute; 0: the operator's default.")] | None = None
    tpm: Annotated[PerMinute, Meta(description="Tokens per minute; 0: the operator's default.")] | None = None


class BudgetInput(msgspec.Struct, forbid_unknown_fields=True):
    """A budget of the account (no `api_key_id`) or of one key; one per scope and period: posting again replaces it."""

    period: Annotated[Literal["day", "week", "month"], Meta(description="UTC calendar period; weeks start Monday.")]
    api_key_id: Annotated[str, Meta(max_length=64)] | None = None
    max_spend_usd: Annotated[float, Meta(ge=0, le=1e9, description="List-price USD per period.")] | None = None
    max_tokens: Annotated[int, Meta(ge=0, description="Input + output tokens per period.")] | None = None
    soft_percent: Annotated[int, Meta(ge=1, le=100, description="Warning threshold, percent of a limit.")] = 80


class BudgetView(msgspec.Struct):
    """A budget and its current period: what is used, the share of each limit, and its crossings."""

    id: str
    api_key_id: str | None
    period: str
    max_spend_usd: float | None
    max_tokens: int | None
    soft_percent: int
    period_start: str
    resets_at: str
    spend_usd: float
    tokens: int
    spend_percent: float | None
    tokens_percent: float | None
    # "ok", "warning" (past the soft threshold) or "exceeded" (requests answer 429 until resets_at).
    status: str
    soft_crossed_at: str | None
    hard_crossed_at: str | None
    created_at: str
    updated_at: str


class BudgetList(msgspec.Struct):
    object: Literal["list"]
    data: list[BudgetView]


@get(
    "/v1/account/budgets",
    summary="The account's budgets and its keys', with the current period's use",
    security=API_KEY,
    responses=errors(*AUTHENTICATED),
)
async def list_budgets(runtime: NamedDependency[Runtime], principal: NamedDependency[Principal]) -> BudgetList:
    return BudgetList("list", await budgets_in_use(runtime, principal.account_id))


async def budgets_in_use(runtime: Runtime, account_id: str) -> list[BudgetView]:
    """The account's budgets with their use: the ledger's, or the live counter's where it is ahead."""
    now = dt.datetime.now(dt.UTC)
    budgets = (await runtime.downstream.list_budgets(account_id)).budgets
    counters = {b.id: period_budgets(b, account_id, "", now) for b in budgets}
    live = await runtime.rate_limiter.period_use(c for cs in counters.values() for c in cs)
    views = []
    for budget in budgets:
        spend, tokens = budget.spend_usd, float(budget.tokens)
        for counter in counters[budget.id]:
            used = live.get(counter.redis_key, 0.0)
            if counter.unit == SPEND:
                spend = max(spend, used)
            else:
                tokens = max(tokens, used)
        views.append(_view(budget, spend, round(tokens)))
    return views


def _view(budget: accounting_pb2.BudgetDefinition, spend: float, tokens: int) -> BudgetView:
    times = plain(budget)
    spend_share = 100 * spend / budget.max_spend_usd if budget.max_spend_usd else None
    token_share = 100 * tokens / budget.max_tokens if budget.max_tokens else None
    share = max((s for s in (spend_share, token_share) if s is not None), default=0.0)
    status = "exceeded" if share >= 100 else "warning" if share >= budget.soft_percent else "ok"
    return BudgetView(
        id=budget.id,
        api_key_id=budget.api_key_id or None,
        period=budget.period,
        max_spend_usd=budget.max_spend_usd or None,
        max_tokens=budget.max_tokens or None,
        soft_percent=budget.soft_percent,
        period_start=times["period_start"],
        resets_at=times["resets_at"],
        spend_usd=round(spend, 10),
        tokens=tokens,
        spend_percent=round(spend_share, 2) if spend_share is not None else None,
        tokens_percent=round(token_share, 2) if token_share is not None else None,
        status=status,
        soft_crossed_at=times["soft_crossed_at"],
        hard_crossed_at=times["hard_crossed_at"],
        created_at=times["created_at"],
        updated_at=times["updated_at"],
    )


@post(
    "/v1/account/budgets",
    summary="Create the budget of a scope and period, or replace its limits",
    status_code=200,
    security=API_KEY,
    operation_class=json_body(BudgetInput),
    responses=errors(*AUTHENTICATED, *BODY, 404),
)
async def put_budget(
    request: Request[Any, Any, Any], runtime: NamedDependency[Runtime], principal: NamedDependency[Principal]
) -> BudgetView:
    saved = await save_budget(runtime, principal.account_id, await read_struct(request, BudgetInput))
    return next(view for view in await budgets_in_use(runtime, principal.account_id) if view.id == saved)


async def save_budget(runtime: Runtime, account_id: str, body: BudgetInput) -> str:
    """Create or replace the budget of `body`'s scope and period (the account API and the dashboard); its id."""
    saved = await runtime.downstream.put_budget(
        accounting_pb2.BudgetDefinition(
            account_id=account_id,
            api_key_id=body.api_key_id or "",
            period=body.period,
            max_spend_usd=body.max_spend_usd or 0.0,
            max_tokens=body.max_tokens or 0,
            soft_percent=body.soft_percent,
        )
    )
    runtime.limit_policies.forget(account_id)
    return str(saved.id)


@delete(
    "/v1/account/budgets/{budget_id:str}",
    summary="Delete a budget at once",
    status_code=200,
    security=API_KEY,
    responses=errors(*AUTHENTICATED, 404),
)
async def delete_budget(
    runtime: NamedDependency[Runtime], principal: NamedDependency[Principal], budget_id: FromPath[str]
) -> dict[str, Any]:
    return {"id": await remove_budget(runtime, principal.account_id, budget_id), "deleted": True}


async def remove_budget(runtime: Runtime, account_id: str, budget_id: str) -> str:
    """Delete the budget at once (the account API and the dashboard); its id."""
    deleted = await runtime.downstream.delete_budget(account_id, budget_id)
    runtime.limit_policies.forget(account_id)
    return str(deleted.id)


@patch(
    "/v1/account/keys/{key_id:str}",
    summary="Set an API key's allowed models and per-minute limits",
    security=API_KEY,
    operation_class=json_body(KeyLimits),
    responses=errors(*AUTHENTICATED, *BODY, 404),
)
async def update_key(
    request: Request[Any, Any, Any],
    runtime: NamedDependency[Runtime],
    principal: NamedDependency[Principal],
    key_id: FromPath[str],
) -> dict[str, Any]:
    body = await read_struct(request, KeyLimits)
    return plain(await set_key_limits(runtime, principal.account_id, key_id, body))


async def set_key_limits(
    runtime: Runtime, account_id: str, key_id: str, limits: KeyLimits
) -> accounting_pb2.ApiKeyInfo:
    """Set the key's limits (a field left out keeps its value); the account API and key creation both call this."""
    keys = (await runtime.downstream.list_api_keys(account_id)).keys
    current = next((k for k in keys if k.id == key_id), accounting_pb2.ApiKeyInfo())
    updated = await runtime.downstream.set_api_key_limits(
        accounting_pb2.ApiKeyLimits(
            account_id=account_id,
            api_key_id=key_id,
            allowed_models=current.allowed_models if limits.allowed_models is None else limits.allowed_models,
            rpm=current.rpm if limits.rpm is None else limits.rpm,
            tpm=current.tpm if limits.tpm is None else limits.tpm,
        )
    )
    runtime.limit_policies.forget(account_id)
    return updated


ROUTES = (list_budgets, put_budget, delete_budget, update_key)
