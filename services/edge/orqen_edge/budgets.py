"""Budgets and per-key limits at the edge: which apply to a caller, the allowed-models check, and
what a finished call costs.

Accounting keeps the definitions (orqen_accounting.budgets); each edge replica keeps an account's
policy for ORQEN_BUDGET_POLICY_TTL_SECONDS, so the request path asks accounting about once per
account in that time, and the check itself is the rate limiter's one Redis round trip
(orqen_edge.rate_limit). When accounting cannot say what an account's policy is and this replica
has never known it, the request is not limited (fail open, logged and counted) rather than refused.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable

import grpc
import structlog
from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client import Counter

from orqen.v1 import accounting_pb2, common_pb2
from orqen_common.allowed_models import ROUTING_PREFIX, model_allowed
from orqen_common.budget_period import period_end, period_start
from orqen_common.context import Principal
from orqen_common.errors import OrqenError, kind_for_grpc
from orqen_common.prices import Prices
from orqen_edge.rate_limit import NO_LIMITS, SPEND, TOKENS, Admission, CallerLimits, PeriodBudget, RateLimiter
from orqen_edge.rpc import Downstream

log = structlog.get_logger(__name__)

POLICY_FAIL_OPEN = Counter(
    "orqen_budget_policy_fail_open_total", "Requests not held to budgets because accounting could not say which apply."
)
BUDGET_CROSSINGS = Counter(
    "orqen_budget_crossings_total", "Budgets that crossed their soft threshold or their limit.", ["threshold"]
)


class LimitPolicies:
    """Each account's budgets and key limits, from accounting, kept in this process for `ttl` seconds.

    One fetch per account at a time; while accounting does not answer, the last policy known
    stands in (for another `ttl`), and an account never known is not limited for `ttl`.
    """

    def __init__(self, downstream: Downstream, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._downstream = downstream
        self._ttl = ttl
        self._clock = clock
        self._known: dict[str, tuple[float, accounting_pb2.LimitPolicy | None]] = {}
        self._fetching: dict[str, asyncio.Future[accounting_pb2.LimitPolicy | None]] = {}
        # (account, key) -> the policy they were built from, until when they hold, the caller's limits.
        self._callers: dict[tuple[str, str], tuple[accounting_pb2.LimitPolicy | None, dt.datetime, CallerLimits]] = {}

    async def get(self, account_id: str) -> accounting_pb2.LimitPolicy | None:
        """The account's policy; None when it is unknown (accounting away)."""
        known = self._known.get(account_id)
        if known is not None and known[0] > self._clock():
            return known[1]
        pending = self._fetching.get(account_id)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[accounting_pb2.LimitPolicy | None] = asyncio.get_running_loop().create_future()
        self._fetching[account_id] = future
        last = known[1] if known else None
        try:
            policy = await self._fetch(account_id, last)
        except BaseException:
            future.set_result(last)  # this request was cancelled: the others waiting on it go on with the last known
            raise
        finally:
            del self._fetching[account_id]
        self._known[account_id] = (self._clock() + self._ttl, policy)
        future.set_result(policy)
        return policy

    async def caller(
        self, principal: Principal, now: dt.datetime
    ) -> tuple[accounting_pb2.LimitPolicy | None, CallerLimits]:
        """The caller's account policy and its limits now; the limits are built once per policy and period."""
        policy = await self.get(principal.account_id)
        scope = (principal.account_id, principal.api_key_id)
        cached = self._callers.get(scope)
        if cached is not None and cached[0] is policy and now < cached[1]:
            return policy, cached[2]
        limits = caller_limits(policy, principal, now)
        until = min((p.resets_at for p in limits.periods), default=now + dt.timedelta(days=1))
        self._callers[scope] = (policy, until, limits)
        return policy, limits

    def forget(self, account_id: str) -> None:
        """Drop the account's policy after a change made through this replica (the others follow within `ttl`)."""
        self._known.pop(account_id, None)

    async def _fetch(
        self, account_id: str, last: accounting_pb2.LimitPolicy | None
    ) -> accounting_pb2.LimitPolicy | None:
        try:
            return await self._downstream.limit_policy(account_id)
        except OrqenError as err:
            if last is None:
                POLICY_FAIL_OPEN.inc()
            log.warning("budgets unavailable; using the last known", known=last is not None, error=err.message)
            return last


def caller_limits(policy: accounting_pb2.LimitPolicy | None, principal: Principal, now: dt.datetime) -> CallerLimits:
    """The limits the caller is held to now: its key's per-minute limits, and the budgets of its key and account."""
    if policy is None:
        return NO_LIMITS
    key = _key_limits(policy, principal.api_key_id)
    periods = [
        counter
        for budget in policy.budgets
        if not budget.api_key_id or budget.api_key_id == principal.api_key_id
        for counter in period_budgets(budget, principal.account_id, _owner(policy, budget), now)
    ]
    if key is None and not periods:
        return NO_LIMITS
    return CallerLimits(
        key_rpm=key.rpm if key else 0,
        key_tpm=key.tpm if key else 0,
        periods=tuple(periods),
        allowed_models=tuple(key.allowed_models) if key else (),
    )


def period_budgets(
    budget: accounting_pb2.BudgetDefinition, account_id: str, owner: str, now: dt.datetime
) -> list[PeriodBudget]:
    """The counters of one budget in the period that contains `now`: one per limit it sets (spend, tokens)."""
    start, resets_at = period_start(budget.period, now), period_end(budget.period, now)
    counters = []
    for unit, limit in ((SPEND, budget.max_spend_usd), (TOKENS, float(budget.max_tokens))):
        if limit > 0:
            soft_limit = limit * (budget.soft_percent or 100) / 100
            counters.append(
                PeriodBudget(
                    budget.id,
                    account_id,
                    budget.api_key_id,
                    owner,
                    budget.period,
                    unit,
                    limit,
                    soft_limit,
                    start,
                    resets_at,
                )
            )
    return counters


def _owner(policy: accounting_pb2.LimitPolicy, budget: accounting_pb2.BudgetDefinition) -> str:
    """Who a budget belongs to, as a refusal names it."""
    if not budget.api_key_id:
        return "account"
    return f"API key {policy.key_labels.get(budget.api_key_id, budget.api_key_id)!r}"


def check_model_allowed(policy: accounting_pb2.LimitPolicy | None, principal: Principal, model: str) -> None:
    """A 403 in the caller's SDK shape when the caller's key may not use `model` (names or glob patterns)."""
    key = _key_limits(policy, principal.api_key_id) if policy is not None else None
    if key is None or not model or model_allowed(model, key.allowed_models):
        return
    if model.startswith(ROUTING_PREFIX):  # dispatch keeps what it picks to the allowed models
        return
    assert policy is not None
    label = policy.key_labels.get(principal.api_key_id, principal.api_key_id)
    raise OrqenError(
        kind_for_grpc(grpc.StatusCode.PERMISSION_DENIED),
        f"Model {model!r} is not allowed for API key {label!r}; it may use: {', '.join(key.allowed_models)}.",
        code="model_not_allowed",
    )


def _key_limits(policy: accounting_pb2.LimitPolicy, api_key_id: str) -> accounting_pb2.ApiKeyLimits | None:
    return next((k for k in policy.keys if k.api_key_id == api_key_id), None) if api_key_id else None


def call_cost_usd(prices: Prices, provider: str, model: str, usage: common_pb2.Usage) -> float:
    """What a call costs towards spend budgets: its list price now, as the ledger prices it.

    An unpriced model counts 0 (the ledger records it with no cost and price_unknown).
    """
    if not provider or not model:
        return 0.0
    cost = prices.price(provider, model, usage, dt.datetime.now(dt.UTC))
    return float(cost.total) if cost is not None else 0.0


class AccountingLedger:
    """The rate limiter's view of accounting for period budgets (orqen_edge.rate_limit.BudgetLedger)."""

    def __init__(self, downstream: Downstream) -> None:
        self._downstream = downstream
        self._recording: set[asyncio.Task[None]] = set()

    async def use(self, account_id: str, api_key_id: str, since: dt.datetime) -> tuple[float, int]:
        request = accounting_pb2.BudgetUseRequest(account_id=account_id, api_key_id=api_key_id, since=_ts(since))
        use = await self._downstream.budget_use(request)
        return use.spend_usd, use.tokens

    def crossed(self, budget: PeriodBudget, threshold: str, used: float) -> None:
        BUDGET_CROSSINGS.labels(threshold).inc()
        log.info("budget threshold crossed", budget_id=budget.budget_id, threshold=threshold, unit=budget.unit)
        alert = accounting_pb2.BudgetAlert(
            account_id=budget.account_id,
            budget_id=budget.budget_id,
            period_start=_ts(budget.start),
            threshold=threshold,
            spend_usd=used if budget.unit == SPEND else 0.0,
            tokens=round(used) if budget.unit == TOKENS else 0,
        )

        async def record() -> None:
            try:
                await self._downstream.record_budget_alert(alert)
            except OrqenError as err:
                log.warning("budget crossing not recorded", budget_id=budget.budget_id, error=err.message)

        task = asyncio.create_task(record())
        self._recording.add(task)
        task.add_done_callback(self._recording.discard)


async def admit_call(policies: LimitPolicies, limiter: RateLimiter, principal: Principal, model: str) -> Admission:
    """Check the caller's allowed models, then admit the request against every limit of its key and account."""
    if not principal.account_id:
        return await limiter.admit("", principal.api_key_id)
    policy, limits = await policies.caller(principal, dt.datetime.now(dt.UTC))
    check_model_allowed(policy, principal, model)
    return await limiter.admit(principal.account_id, principal.api_key_id, limits)


def _ts(value: dt.datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts
