"""Budgets and per-key limits over gRPC on a real Postgres: stored per scope and period, validated,
isolated between accounts, listed with the ledger's use of the current period and their crossings."""

import datetime as dt
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from orqen.v1 import accounting_pb2, accounting_pb2_grpc, common_pb2, dispatch_pb2, events_pb2
from orqen_accounting.repository import AccountingRepository
from orqen_common.budget_period import period_start

Connect = Callable[..., AbstractAsyncContextManager[accounting_pb2_grpc.AccountingStub]]
Refused = Callable[[Awaitable[Any], grpc.StatusCode], Awaitable[str]]
Record = Callable[[list[events_pb2.RequestCompleted]], Awaitable[int]]


def _now_event(request_id: str, account_id: str, api_key_id: str, tokens: int) -> events_pb2.RequestCompleted:
    created = Timestamp()
    created.GetCurrentTime()
    return events_pb2.RequestCompleted(
        context=common_pb2.RequestContext(
            request_id=request_id, account_id=account_id, api_key_id=api_key_id, ingress="openai"
        ),
        created_at=created,
        model_requested="gpt-4o-mini",
        status=200,
        dispatch=dispatch_pb2.DispatchSummary(
            provider="openai", model="gpt-4o-mini", usage=common_pb2.Usage(input_tokens=tokens, output_tokens=0)
        ),
    )


async def test_budgets_are_listed_with_the_ledgers_use_of_the_current_period(
    repo: AccountingRepository, connect: Connect, record: Record
) -> None:
    account = await repo.ensure_account("acme")
    ci = await repo.create_key(account["id"], "ci", None)
    laptop = await repo.create_key(account["id"], "laptop", None)
    await record(
        [
            _now_event("r1", account["id"], ci.api_key_id, 1_000_000),  # gpt-4o-mini: $0.15 per 1M input tokens
            _now_event("r2", account["id"], laptop.api_key_id, 2_000_000),
        ]
    )
    async with connect(ci.plaintext) as stub:
        monthly = await stub.PutBudget(accounting_pb2.BudgetDefinition(period="month", max_spend_usd=1.0))
        keys = await stub.PutBudget(
            accounting_pb2.BudgetDefinition(api_key_id=ci.api_key_id, period="day", max_tokens=1_500_000)
        )
        # Posting the same scope and period again replaces its limits (same budget).
        again = await stub.PutBudget(
            accounting_pb2.BudgetDefinition(
                api_key_id=ci.api_key_id, period="day", max_tokens=1_200_000, soft_percent=50
            )
        )
        listed = (await stub.ListBudgets(accounting_pb2.AccountRef())).budgets
    assert again.id == keys.id and again.max_tokens == 1_200_000 and again.soft_percent == 50
    assert monthly.soft_percent == 80  # the default
    assert [(b.id, b.api_key_id, b.period) for b in listed] == [
        (monthly.id, "", "month"),
        (keys.id, ci.api_key_id, "day"),
    ]
    account_budget, key_budget = listed
    assert (round(account_budget.spend_usd, 6), account_budget.tokens) == (0.45, 3_000_000)  # both keys
    assert (round(key_budget.spend_usd, 6), key_budget.tokens) == (0.15, 1_000_000)  # its key only
    now = dt.datetime.now(dt.UTC)
    assert key_budget.period_start.ToDatetime(tzinfo=dt.UTC) == period_start("day", now)
    assert account_budget.period_start.ToDatetime(tzinfo=dt.UTC) == period_start("month", now)
    assert not key_budget.HasField("soft_crossed_at")


async def test_crossings_are_recorded_once_and_shown(
    repo: AccountingRepository, connect: Connect, orqen_refused: Refused
) -> None:
    account = await repo.ensure_account("acme")
    other = await repo.ensure_account("globex")
    async with connect() as service:
        budget = await service.PutBudget(
            accounting_pb2.BudgetDefinition(account_id=account["id"], period="week", max_tokens=100)
        )
        start = Timestamp()
        start.FromDatetime(period_start("week", dt.datetime.now(dt.UTC)))
        alert = accounting_pb2.BudgetAlert(
            account_id=account["id"], budget_id=budget.id, period_start=start, threshold="soft", tokens=85
        )
        await service.RecordBudgetAlert(alert)
        await service.RecordBudgetAlert(alert)  # another replica, the same crossing: one row
        listed = (await service.ListBudgets(accounting_pb2.AccountRef(account_id=account["id"]))).budgets
        # Another account's budget id records nothing.
        stranger = accounting_pb2.BudgetAlert(
            account_id=other["id"], budget_id=budget.id, period_start=start, threshold="soft"
        )
        await orqen_refused(service.RecordBudgetAlert(stranger), grpc.StatusCode.NOT_FOUND)
    assert listed[0].HasField("soft_crossed_at") and not listed[0].HasField("hard_crossed_at")
    assert await repo.pool.fetchval("SELECT count(*) FROM budget_alerts") == 1


async def test_bad_budgets_and_limits_are_refused_by_field(
    repo: AccountingRepository, connect: Connect, orqen_refused: Refused
) -> None:
    account = await repo.ensure_account("acme")
    key = await repo.create_key(account["id"], "ci", None)
    other = await repo.ensure_account("globex")
    foreign = await repo.create_key(other["id"], "theirs", None)
    async with connect(key.plaintext) as stub:
        cases = {
            "period": accounting_pb2.BudgetDefinition(period="year", max_tokens=1),
            "max_spend_usd or max_tokens": accounting_pb2.BudgetDefinition(period="day"),
            "soft_percent": accounting_pb2.BudgetDefinition(period="day", max_tokens=1, soft_percent=101),
            "max_tokens cannot": accounting_pb2.BudgetDefinition(period="day", max_tokens=-1),
            "max_spend_usd must": accounting_pb2.BudgetDefinition(period="day", max_spend_usd=float("nan")),
            # Below the stored precision it would be stored as no limit at all (found by the OpenAPI fuzzer).
            "at least 0.0000000001": accounting_pb2.BudgetDefinition(period="day", max_spend_usd=5e-324),
        }
        for words, budget in cases.items():
            assert words in await orqen_refused(stub.PutBudget(budget), grpc.StatusCode.INVALID_ARGUMENT)
        # Another account's key is no key of this account.
        theirs = accounting_pb2.BudgetDefinition(api_key_id=foreign.api_key_id, period="day", max_tokens=1)
        await orqen_refused(stub.PutBudget(theirs), grpc.StatusCode.NOT_FOUND)
        limits = accounting_pb2.ApiKeyLimits(api_key_id=foreign.api_key_id, allowed_models=["gpt-4o*"])
        await orqen_refused(stub.SetApiKeyLimits(limits), grpc.StatusCode.NOT_FOUND)
        blank = accounting_pb2.ApiKeyLimits(api_key_id=key.api_key_id, allowed_models=[" "])
        assert "allowed_models" in await orqen_refused(stub.SetApiKeyLimits(blank), grpc.StatusCode.INVALID_ARGUMENT)
        # The edge's own calls are the internal service's only.
        await orqen_refused(stub.GetLimitPolicy(accounting_pb2.AccountRef()), grpc.StatusCode.PERMISSION_DENIED)


async def test_the_limit_policy_holds_budgets_and_key_limits(repo: AccountingRepository, connect: Connect) -> None:
    account = await repo.ensure_account("acme")
    ci = await repo.create_key(account["id"], "ci", None)
    await repo.create_key(account["id"], "laptop", None)
    async with connect(ci.plaintext) as stub:
        info = await stub.SetApiKeyLimits(
            accounting_pb2.ApiKeyLimits(api_key_id=ci.api_key_id, allowed_models=["gpt-4o*", "gpt-4o*"], rpm=5)
        )
        budget = await stub.PutBudget(accounting_pb2.BudgetDefinition(period="day", max_spend_usd=2.5))
        deleted_soon = await stub.PutBudget(accounting_pb2.BudgetDefinition(period="week", max_tokens=9))
        await stub.DeleteBudget(accounting_pb2.BudgetRef(budget_id=deleted_soon.id))
        for missing in (deleted_soon.id, "req_not-a-budget-id"):  # gone, or no budget id at all: both 404
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.DeleteBudget(accounting_pb2.BudgetRef(budget_id=missing))
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert (list(info.allowed_models), info.rpm, info.tpm) == (["gpt-4o*"], 5, 0)
    async with connect() as service:
        policy = await service.GetLimitPolicy(accounting_pb2.AccountRef(account_id=account["id"]))
    assert [b.id for b in policy.budgets] == [budget.id]
    assert [(k.api_key_id, list(k.allowed_models), k.rpm) for k in policy.keys] == [(ci.api_key_id, ["gpt-4o*"], 5)]
    assert policy.key_labels[ci.api_key_id] == f"ci ({ci.prefix}...)"


async def test_the_request_log_shows_a_requests_budget_warning(
    repo: AccountingRepository, connect: Connect, record: Record
) -> None:
    account = await repo.ensure_account("acme")
    key = await repo.create_key(account["id"], "ci", None)
    warned = _now_event("r1", account["id"], key.api_key_id, 10)
    warned.budget_warning = "at 83% of the monthly spend budget of account ($50.00)"
    await record([warned, _now_event("r2", account["id"], key.api_key_id, 10)])
    async with connect(key.plaintext) as stub:
        first = await stub.GetRequest(accounting_pb2.GetRequestRequest(request_id="r1"))
        second = await stub.GetRequest(accounting_pb2.GetRequestRequest(request_id="r2"))
    assert (first.budget_warning, second.budget_warning) == (warned.budget_warning, "")


async def test_a_keys_use_is_summed_from_its_own_rows(
    repo: AccountingRepository, connect: Connect, record: Record
) -> None:
    account = await repo.ensure_account("acme")
    ci = await repo.create_key(account["id"], "ci", None)
    await record([_now_event("r1", account["id"], ci.api_key_id, 400), _now_event("r2", account["id"], "", 50)])
    since = Timestamp()
    since.FromDatetime(period_start("day", dt.datetime.now(dt.UTC)))
    async with connect() as service:
        key_use = await service.GetBudgetUse(
            accounting_pb2.BudgetUseRequest(account_id=account["id"], api_key_id=ci.api_key_id, since=since)
        )
        account_use = await service.GetBudgetUse(accounting_pb2.BudgetUseRequest(account_id=account["id"], since=since))
    assert (key_use.tokens, account_use.tokens) == (400, 450)
