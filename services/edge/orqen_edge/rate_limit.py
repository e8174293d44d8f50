"""Requests and tokens per minute, and spend and token budgets per period, shared by every edge replica.

Per-minute limits (per API key and per account) are leaky buckets kept in Redis: `used` units
drain continuously at `limit` per minute, so a limit frees up gradually (a sliding window)
instead of all at once at the top of each minute, and a quiet caller may spend a whole minute's
budget in one burst.

Period budgets (orqen_edge.budgets: spend in USD or tokens per UTC day, week or month, of a key
or an account) are counters keyed by the period's start, so they reset on their own. A request
is admitted while a budget has something left once what requests in flight hold is counted:
each admitted request reserves its estimated cost (the larger of the last cost and a slowly
decaying average of costs; the rest of the budget while nothing is known yet), and its real
cost replaces the reservation when it ends. Concurrent callers therefore overshoot a budget by
about one request's worth, not by one request per caller. A reservation that is never settled
(an edge killed mid-request) expires after RESERVATION_SECONDS.

A counter Redis does not have (a new period, or Redis restarted or flushed) is seeded from the
ledger's sums before anything is admitted against it, so losing Redis never grants a fresh
budget; and about once a minute one request per counter claims a correction of the counter
from the ledger (never downwards), done off the request path.

Every check-and-spend is one Lua script over all the counters of a key and its account, so the
check and the increment are atomic across replicas. Redis holds counters only: when it is
unreachable, requests are admitted (fail open), logged and counted, never turned into errors.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import grpc
import structlog
from prometheus_client import Counter
from redis.asyncio import Redis
from redis.exceptions import RedisError

from orqen_common.errors import OrqenError, kind_for_grpc
from orqen_common.limit_scripts import LIMITS_SCRIPT, SEED_SCRIPT
from orqen_edge.settings import EdgeSettings

log = structlog.get_logger(__name__)

RATE_LIMITED = Counter("orqen_rate_limited_total", "Requests refused by a rate limit.", ["scope", "unit"])
RATE_LIMIT_FAIL_OPEN = Counter(
    "orqen_rate_limit_fail_open_total", "Rate-limit checks skipped because Redis did not answer.", ["operation"]
)

WINDOW_SECONDS = 60
REQUESTS, TOKENS, SPEND = "requests", "tokens", "spend"
API_KEY_SCOPE, ACCOUNT_SCOPE = "API key", "account"
# How long an admitted request holds its reservation on a period budget when it never ends
# (its edge was killed): longer than any request lasts.
RESERVATION_SECONDS = 900
# How often a period counter is corrected from the ledger, and its stale reservations swept.
RECONCILE_SECONDS = 60
_KEY_PREFIX = "orqen:ratelimit:"
# Redis answers in well under a millisecond; past this the request goes on unlimited
# rather than waiting on a struggling Redis.
_REDIS_DEADLINE_SECONDS = 0.5
# Period counters outlive their period by this much (a replica whose clock is a little behind).
_PERIOD_GRACE_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class RateLimits:
    """The per-minute budgets; 0 means unlimited."""

    key_rpm: int = 0
    key_tpm: int = 0
    account_rpm: int = 0
    account_tpm: int = 0

    @classmethod
    def from_settings(cls, settings: EdgeSettings) -> RateLimits:
        return cls(
            key_rpm=settings.rate_limit_key_rpm,
            key_tpm=settings.rate_limit_key_tpm,
            account_rpm=settings.rate_limit_account_rpm,
            account_tpm=settings.rate_limit_account_tpm,
        )


@dataclass(frozen=True, slots=True)
class Budget:
    """One per-minute limit: whose it is (API key or account), what it counts, how much per minute."""

    scope: str
    unit: str
    limit: int
    redis_key: str


@dataclass(frozen=True, slots=True)
class PeriodBudget:
    """One period budget's counter: the spend (USD) or tokens of an account or a key in the current period."""

    budget_id: str
    account_id: str
    api_key_id: str  # "" for the account's own budget
    owner: str  # who it belongs to, as messages name it: "account" or "API key 'ci (sk-orq-AbCd...)'"
    period: str  # "day", "week", "month"
    unit: str  # SPEND or TOKENS
    limit: float
    soft_limit: float
    start: dt.datetime
    resets_at: dt.datetime

    @property
    def redis_key(self) -> str:
        scope = f"key:{self.api_key_id}" if self.api_key_id else "account"
        return (
            f"{_KEY_PREFIX}{{{self.account_id}}}:budget:{scope}:{self.period}:{int(self.start.timestamp())}:{self.unit}"
        )

    def describe(self) -> str:
        """'the monthly spend budget of API key 'ci (sk-orq-AbCd...)' ($10.00)'."""
        amount = f"${self.limit:,.2f}" if self.unit == SPEND else f"{self.limit:,.0f} tokens"
        period = {"day": "daily", "week": "weekly", "month": "monthly"}[self.period]
        return f"the {period} {self.unit} budget of {self.owner} ({amount})"


@dataclass(frozen=True, slots=True)
class CallerLimits:
    """What one caller is held to beyond the operator's defaults: its key's own per-minute limits and its budgets."""

    key_rpm: int = 0  # 0: the operator's default (RateLimits)
    key_tpm: int = 0
    periods: tuple[PeriodBudget, ...] = ()
    allowed_models: tuple[str, ...] = ()  # names or glob patterns; empty: any model


NO_LIMITS = CallerLimits()


class BudgetLedger(Protocol):
    """What the limiter asks of accounting about period budgets (orqen_edge.budgets.AccountingLedger)."""

    async def use(self, account_id: str, api_key_id: str, since: dt.datetime) -> tuple[float, int]:
        """The ledger's spend (USD) and tokens of the account, or of one key, since `since`."""
        ...

    def crossed(self, budget: PeriodBudget, threshold: str, used: float) -> None:
        """Record (in the background) that `budget` crossed its "soft" threshold or its "hard" limit."""
        ...


@dataclass(frozen=True, slots=True)
class BudgetState:
    """A per-minute limit and how much of it is in use (more than `limit` when tokens overdrew it)."""

    budget: Budget
    used: float

    @property
    def remaining(self) -> int:
        return min(self.budget.limit, max(0, math.floor(self.budget.limit - self.used)))

    @property
    def reset_seconds(self) -> float:
        """Seconds until the budget is whole again (what OpenAI's x-ratelimit-reset-* report)."""
        return self.used * WINDOW_SECONDS / self.budget.limit

    def seconds_until(self, need: float) -> float:
        """Seconds until `need` more units fit."""
        return max(0.0, self.used + need - self.budget.limit) * WINDOW_SECONDS / self.budget.limit


@dataclass(frozen=True, slots=True)
class PeriodState:
    """A period budget, what is spent of it, and what requests in flight hold."""

    budget: PeriodBudget
    used: float
    reserved: float


@dataclass(slots=True)
class Admission:
    """An admitted request: the x-ratelimit-* headers to answer with, and what to charge when it ends."""

    account_id: str
    api_key_id: str
    limits: CallerLimits
    token: str
    headers: dict[str, str] = field(default_factory=dict)
    # The budget furthest past its soft threshold when admitted, for the request log; "" when none.
    warning: str = ""
    settled: bool = False


class RateLimitError(OrqenError):
    """A 429 that carries the x-ratelimit-* headers to the caller's error response."""

    def __init__(
        self, message: str, retry_after: float, headers: Mapping[str, str], code: str = "rate_limit_exceeded"
    ) -> None:
        super().__init__(kind_for_grpc(grpc.StatusCode.RESOURCE_EXHAUSTED), message, retry_after=retry_after, code=code)
        self.headers = dict(headers)


class RateLimiter:
    """Admits requests and charges their tokens and spend against the caller's limits, atomically in Redis.

    `clock` is wall-clock time in seconds; every replica must agree on it, so it is
    `time.time` outside tests. `redis_deadline` is how long a check may wait on Redis before
    the request goes on unlimited. `ledger` answers for period budgets (seeding, corrections,
    crossings); without one, callers with period budgets are not admitted.
    """

    def __init__(
        self,
        redis: Redis,
        limits: RateLimits,
        *,
        ledger: BudgetLedger | None = None,
        clock: Callable[[], float] = time.time,
        redis_deadline: float = _REDIS_DEADLINE_SECONDS,
    ) -> None:
        self._redis = redis
        self._limits = limits
        self._ledger = ledger
        self._clock = clock
        self._redis_deadline = redis_deadline
        self._script = redis.register_script(LIMITS_SCRIPT)
        self._seed_script = redis.register_script(SEED_SCRIPT)
        self._corrections: set[asyncio.Task[None]] = set()

    async def admit(self, account_id: str, api_key_id: str, limits: CallerLimits = NO_LIMITS) -> Admission:
        """Count one request, or raise RateLimitError; the admission says what to charge when the request ends.

        A request needs one free request and at least one free token in every per-minute limit of
        its key and its account, and something left in every period budget once what requests in
        flight hold is counted; otherwise nothing is counted.
        """
        admission = Admission(account_id, api_key_id, limits, secrets.token_hex(8))
        buckets = self._buckets(account_id, api_key_id, limits)
        if not buckets and not limits.periods:
            admission.settled = True  # nothing was counted, so there is nothing to charge when it ends
            return admission
        plan: list[tuple[Budget | PeriodBudget, float, float]] = [
            (b, 1, 1 if b.unit == REQUESTS else 0) for b in buckets
        ]
        plan += [(p, 0, 0) for p in limits.periods]
        answer = await self._run("admit", plan, admission.token)
        if answer is not None and answer[0] == -1:
            missing = [plan[int(i) - 1][0] for i in answer[1:]]
            await self._seed([counter for counter in missing if isinstance(counter, PeriodBudget)])
            answer = await self._run("admit", plan, admission.token)
            if answer is not None and answer[0] == -1:  # flushed again in between: no budget is guessed
                raise OrqenError.of(grpc.StatusCode.UNAVAILABLE, "Budget counters are being rebuilt; retry shortly.")
        if answer is None:
            return admission
        admitted, states, claims = _read(plan, answer)
        minute_states = [s for s in states if isinstance(s, BudgetState)]
        admission.headers = rate_limit_headers(minute_states)
        if not admitted:
            raise _refusal(states, admission.headers, self._clock())
        admission.warning = _warning(states)
        for state, claimed in zip(states, claims, strict=True):
            if claimed and isinstance(state, PeriodState):
                self._correct_later(state.budget)
        return admission

    async def charge(self, admission: Admission | None, tokens: int, spend_usd: float = 0.0) -> None:
        """Spend what a finished (or failed) call used and release its reservations; never refuses, never raises.

        A second charge of the same admission does nothing.
        """
        if admission is None or admission.settled:
            return
        admission.settled = True
        limits = admission.limits
        plan: list[tuple[Budget | PeriodBudget, float, float]] = [
            (b, 0, tokens)
            for b in self._buckets(admission.account_id, admission.api_key_id, limits)
            if b.unit == TOKENS and tokens > 0
        ]
        plan += [(p, 0, spend_usd if p.unit == SPEND else tokens) for p in limits.periods]
        if not plan:
            return
        answer = await self._run("charge", plan, admission.token)
        if answer is None or self._ledger is None:
            return
        _, states, flags = _read(plan, answer)
        for state, crossed in zip(states, flags, strict=True):
            if isinstance(state, PeriodState):
                if crossed & 1:
                    self._ledger.crossed(state.budget, "soft", state.used)
                if crossed & 2:
                    self._ledger.crossed(state.budget, "hard", state.used)

    async def period_use(self, budgets: Iterable[PeriodBudget]) -> dict[str, float]:
        """Redis key -> what is spent of each budget Redis has a counter for (the live view of listings)."""
        budgets = list(budgets)
        if not budgets:
            return {}
        try:
            async with asyncio.timeout(self._redis_deadline):
                pipe = self._redis.pipeline(transaction=False)
                for budget in budgets:
                    pipe.hget(budget.redis_key, "used")
                values = await pipe.execute()
        except (RedisError, OSError, TimeoutError) as err:
            log.warning("budget counters unavailable", error=repr(err))
            return {}
        return {b.redis_key: float(v) for b, v in zip(budgets, values, strict=True) if v is not None}

    async def correct(self, budgets: list[PeriodBudget]) -> None:
        """Seed missing counters from the ledger, and raise existing ones that fell behind it."""
        if self._ledger is None:
            raise OrqenError.of(grpc.StatusCode.UNAVAILABLE, "Budgets cannot be checked: no ledger to count them.")
        uses: dict[tuple[str, dt.datetime], tuple[float, int]] = {}
        for budget in budgets:
            scope = (budget.api_key_id, budget.start)
            if scope not in uses:
                uses[scope] = await self._ledger.use(budget.account_id, budget.api_key_id, budget.start)
        args: list[str | int | float] = [round(self._clock() * 1000), RECONCILE_SECONDS * 1000]
        for budget in budgets:
            spend, tokens = uses[(budget.api_key_id, budget.start)]
            args += [
                spend if budget.unit == SPEND else tokens,
                int(budget.resets_at.timestamp() * 1000) + _PERIOD_GRACE_MS,
            ]
        async with asyncio.timeout(self._redis_deadline):
            await self._seed_script(keys=[b.redis_key for b in budgets], args=args)

    async def _seed(self, budgets: list[PeriodBudget]) -> None:
        """Counters Redis lacks, from the ledger, before anything is admitted against them."""
        try:
            await self.correct(budgets)
        except (RedisError, OSError, TimeoutError) as err:
            RATE_LIMIT_FAIL_OPEN.labels("seed").inc()
            log.warning("budget counters could not be seeded", error=repr(err))
        except OrqenError as err:
            log.warning("the ledger's budget use is unavailable; request refused", error=err.message)
            raise OrqenError.of(
                grpc.StatusCode.UNAVAILABLE, "Budget use cannot be counted right now (accounting is unavailable)."
            ) from None

    def _correct_later(self, budget: PeriodBudget) -> None:
        """Correct the counter from the ledger off the request path (this request claimed it for every replica)."""

        async def correct() -> None:
            try:
                await self.correct([budget])
            except (RedisError, OSError, TimeoutError, OrqenError) as err:
                log.warning("budget counter not corrected from the ledger", error=repr(err))

        task = asyncio.create_task(correct())
        self._corrections.add(task)
        task.add_done_callback(self._corrections.discard)

    def _buckets(self, account_id: str, api_key_id: str, limits: CallerLimits) -> list[Budget]:
        # The account id is the hash tag of every key, so one script's keys share a
        # Redis Cluster slot (a key belongs to exactly one account).
        base = f"{_KEY_PREFIX}{{{account_id}}}:"
        defaults = self._limits
        wanted: list[tuple[str, str, int, str]] = []
        if api_key_id:
            wanted += [
                (API_KEY_SCOPE, REQUESTS, limits.key_rpm or defaults.key_rpm, f"{base}key:{api_key_id}:{REQUESTS}"),
                (API_KEY_SCOPE, TOKENS, limits.key_tpm or defaults.key_tpm, f"{base}key:{api_key_id}:{TOKENS}"),
            ]
        if account_id:
            wanted += [
                (ACCOUNT_SCOPE, REQUESTS, defaults.account_rpm, f"{base}account:{REQUESTS}"),
                (ACCOUNT_SCOPE, TOKENS, defaults.account_tpm, f"{base}account:{TOKENS}"),
            ]
        return [Budget(scope, unit, limit, key) for scope, unit, limit, key in wanted if limit > 0]

    async def _run(
        self, operation: str, plan: list[tuple[Budget | PeriodBudget, float, float]], token: str
    ) -> list[bytes | int] | None:
        """Run the script over (counter, need, cost) triples; None when Redis did not answer."""
        args: list[str | int | float] = [
            round(self._clock() * 1000),
            WINDOW_SECONDS * 1000,
            operation,
            token,
            RESERVATION_SECONDS * 1000,
            RECONCILE_SECONDS * 1000,
        ]
        for counter, need, cost in plan:
            if isinstance(counter, Budget):
                args.append(f"b {counter.limit} {need} {cost} 0")
            else:
                args.append(f"p {counter.limit!r} 0 {float(cost)!r} {counter.soft_limit!r}")
        try:
            async with asyncio.timeout(self._redis_deadline):
                reply: list[bytes | int] = await self._script(keys=[c.redis_key for c, _, _ in plan], args=args)
        except (RedisError, OSError, TimeoutError) as err:
            RATE_LIMIT_FAIL_OPEN.labels(operation).inc()
            log.warning("rate limits unavailable, request not limited", operation=operation, error=repr(err))
            return None
        return reply


def _read(
    plan: list[tuple[Budget | PeriodBudget, float, float]], answer: list[bytes | int]
) -> tuple[bool, list[BudgetState | PeriodState], list[int]]:
    """The script's answer: admitted, each counter's state, and each counter's flag."""
    states: list[BudgetState | PeriodState] = []
    flags: list[int] = []
    for n, (counter, _, _) in enumerate(plan):
        used, reserved, flag = answer[1 + 3 * n : 4 + 3 * n]
        if isinstance(counter, Budget):
            states.append(BudgetState(counter, float(used)))
        else:
            states.append(PeriodState(counter, float(used), float(reserved)))
        flags.append(int(flag))
    return bool(answer[0]), states, flags


def _warning(states: list[BudgetState | PeriodState]) -> str:
    """'at 83% of the monthly spend budget of account ($50.00)' for the budget furthest past its soft threshold."""
    past = [s for s in states if isinstance(s, PeriodState) and s.used >= s.budget.soft_limit]
    if not past:
        return ""
    worst = max(past, key=lambda s: s.used / s.budget.limit)
    return f"at {100 * worst.used / worst.budget.limit:.0f}% of {worst.budget.describe()}"


def _refusal(states: list[BudgetState | PeriodState], headers: Mapping[str, str], now: float) -> RateLimitError:
    """The 429 for the limit that keeps the caller waiting longest: a spent budget before a per-minute limit."""
    spent = [s for s in states if isinstance(s, PeriodState) and s.used >= s.budget.limit]
    if spent:
        budget = max(spent, key=lambda s: s.budget.resets_at).budget
        RATE_LIMITED.labels("key" if budget.api_key_id else "account", budget.unit).inc()
        wait = max(1.0, math.ceil(budget.resets_at.timestamp() - now))
        resets = budget.resets_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        message = f"Budget exceeded: {budget.describe()} is spent; it resets at {resets}."
        return RateLimitError(message, wait, headers, code="budget_exceeded")
    held = [s for s in states if isinstance(s, PeriodState) and s.used + s.reserved >= s.budget.limit]
    if held:
        budget = held[0].budget
        RATE_LIMITED.labels("key" if budget.api_key_id else "account", budget.unit).inc()
        message = (
            f"Budget nearly spent: what is left of {budget.describe()} is held by requests in flight; "
            "retry when they finish."
        )
        return RateLimitError(message, 1.0, {**headers, "retry-after-ms": "1000"}, code="budget_exceeded")
    minute = [s for s in states if isinstance(s, BudgetState)]
    worst = max(minute, key=lambda s: s.seconds_until(1))
    limit = worst.budget
    RATE_LIMITED.labels("key" if limit.scope == API_KEY_SCOPE else "account", limit.unit).inc()
    wait = worst.seconds_until(1)
    message = f"Rate limit reached for {limit.scope}: {limit.limit} {limit.unit} per minute."
    # Whole seconds, rounded up, so a caller that honours Retry-After is not refused again;
    # retry-after-ms (read by the OpenAI and Anthropic SDKs) carries the precise wait.
    retry_headers = {**headers, "retry-after-ms": str(math.ceil(wait * 1000))}
    return RateLimitError(message, float(math.ceil(wait)), retry_headers)


def rate_limit_headers(states: Iterable[BudgetState]) -> dict[str, str]:
    """OpenAI's x-ratelimit-* headers for the tighter (fewest remaining) of the key's and account's budgets."""
    states = list(states)
    headers: dict[str, str] = {}
    for unit in (REQUESTS, TOKENS):
        candidates = [s for s in states if s.budget.unit == unit]
        if not candidates:
            continue
        tightest = min(candidates, key=lambda s: (s.remaining, -s.reset_seconds))
        headers[f"x-ratelimit-limit-{unit}"] = str(tightest.budget.limit)
        headers[f"x-ratelimit-remaining-{unit}"] = str(tightest.remaining)
        headers[f"x-ratelimit-reset-{unit}"] = format_duration(tightest.reset_seconds)
    return headers


def format_duration(seconds: float) -> str:
    """A duration the way OpenAI's reset headers write it (Go's style): "17ms", "12s", "8.5s", "6m0s"."""
    millis = max(0, math.ceil(seconds * 1000 - 1e-6))
    if millis == 0:
        return "0s"
    if millis < 1000:
        return f"{millis}ms"
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs = f"{rest / 1000:.3f}".rstrip("0").rstrip(".")
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"
