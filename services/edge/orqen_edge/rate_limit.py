"""Requests and tokens per minute, per API key and per account, shared by every edge replica.

Each budget is a leaky bucket kept in Redis: `used` units drain continuously at
`limit` per minute, so a budget frees up gradually (a sliding window) instead of all
at once at the top of each minute, and a quiet caller may spend a whole minute's
budget in one burst. Every check-and-spend is one Lua script, so the check and the
increment are atomic across replicas: N concurrent requests against a budget of 10
admit exactly 10.

Requests are counted before the call (the request is refused when either its request
budget or its token budget is spent); tokens are only known afterwards, so they are
charged after the call and may overdraw the budget, which then refuses new requests
until it has drained back below its limit.

Redis holds counters only: when it is unreachable, requests are admitted (fail open),
logged and counted, never turned into errors.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import grpc
import structlog
from prometheus_client import Counter
from redis.asyncio import Redis
from redis.exceptions import RedisError

from orqen_common.errors import OrqenError, kind_for_grpc
from orqen_common.leaky_bucket import LEAKY_BUCKETS_LUA
from orqen_edge.settings import EdgeSettings

log = structlog.get_logger(__name__)

RATE_LIMITED = Counter("orqen_rate_limited_total", "Requests refused by a rate limit.", ["scope", "unit"])
RATE_LIMIT_FAIL_OPEN = Counter(
    "orqen_rate_limit_fail_open_total", "Rate-limit checks skipped because Redis did not answer.", ["operation"]
)

WINDOW_SECONDS = 60
REQUESTS, TOKENS = "requests", "tokens"
API_KEY_SCOPE, ACCOUNT_SCOPE = "API key", "account"
_KEY_PREFIX = "orqen:ratelimit:"
# Redis answers in well under a millisecond; past this the request goes on unlimited
# rather than waiting on a struggling Redis.
_REDIS_DEADLINE_SECONDS = 0.5


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
    """One limit: whose it is (API key or account), what it counts, how much per minute."""

    scope: str
    unit: str
    limit: int
    redis_key: str


@dataclass(frozen=True, slots=True)
class BudgetState:
    """A budget and how much of it is in use (more than `limit` when tokens overdrew it)."""

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


class RateLimitError(OrqenError):
    """A 429 that carries the x-ratelimit-* headers to the caller's error response."""

    def __init__(self, message: str, retry_after: float, headers: Mapping[str, str]) -> None:
        super().__init__(
            kind_for_grpc(grpc.StatusCode.RESOURCE_EXHAUSTED),
            message,
            retry_after=retry_after,
            code="rate_limit_exceeded",
        )
        self.headers = dict(headers)


class RateLimiter:
    """Admits requests and charges tokens against the configured budgets, atomically in Redis.

    `clock` is wall-clock time in seconds; every replica must agree on it, so it is
    `time.time` outside tests. `redis_deadline` is how long a check may wait on Redis before
    the request goes on unlimited.
    """

    def __init__(
        self,
        redis: Redis,
        limits: RateLimits,
        *,
        clock: Callable[[], float] = time.time,
        redis_deadline: float = _REDIS_DEADLINE_SECONDS,
    ) -> None:
        self._redis = redis
        self._limits = limits
        self._clock = clock
        self._redis_deadline = redis_deadline
        self._script = redis.register_script(LEAKY_BUCKETS_LUA)

    async def admit(self, account_id: str, api_key_id: str) -> dict[str, str]:
        """Count one request, or raise RateLimitError; returns the x-ratelimit-* headers for the response.

        A request needs one free request and at least one free token in every budget of
        its key and its account; otherwise nothing is counted.
        """
        budgets = self._budgets(account_id, api_key_id)
        if not budgets:
            return {}
        plan = [(b, 1, 1 if b.unit == REQUESTS else 0) for b in budgets]
        answer = await self._run("admit", plan, enforce=True)
        if answer is None:
            return {}
        admitted, states = answer
        headers = rate_limit_headers(states)
        if not admitted:
            raise _refusal(states, headers)
        return headers

    async def charge(self, account_id: str, api_key_id: str, tokens: int) -> None:
        """Spend the tokens a finished call used; never refuses and never raises."""
        budgets = [b for b in self._budgets(account_id, api_key_id) if b.unit == TOKENS]
        if tokens <= 0 or not budgets:
            return
        await self._run("charge", [(b, 0, tokens) for b in budgets], enforce=False)

    def _budgets(self, account_id: str, api_key_id: str) -> list[Budget]:
        # The account id is the hash tag of every key, so one script's keys share a
        # Redis Cluster slot (a key belongs to exactly one account).
        base = f"{_KEY_PREFIX}{{{account_id}}}:"
        limits = self._limits
        wanted: list[tuple[str, str, int, str]] = []
        if api_key_id:
            wanted += [
                (API_KEY_SCOPE, REQUESTS, limits.key_rpm, f"{base}key:{api_key_id}:{REQUESTS}"),
                (API_KEY_SCOPE, TOKENS, limits.key_tpm, f"{base}key:{api_key_id}:{TOKENS}"),
            ]
        if account_id:
            wanted += [
                (ACCOUNT_SCOPE, REQUESTS, limits.account_rpm, f"{base}account:{REQUESTS}"),
                (ACCOUNT_SCOPE, TOKENS, limits.account_tpm, f"{base}account:{TOKENS}"),
            ]
        return [Budget(scope, unit, limit, key) for scope, unit, limit, key in wanted if limit > 0]

    async def _run(
        self, operation: str, plan: list[tuple[Budget, int, int]], *, enforce: bool
    ) -> tuple[bool, list[BudgetState]] | None:
        """Run the script over (budget, need, cost) triples; None when Redis did not answer."""
        args: list[str | int] = [round(self._clock() * 1000), WINDOW_SECONDS * 1000, "1" if enforce else "0"]
        for budget, need, cost in plan:
            args += [budget.limit, need, cost]
        try:
            async with asyncio.timeout(self._redis_deadline):
                reply = await self._script(keys=[b.redis_key for b, _, _ in plan], args=args)
        except (RedisError, OSError, TimeoutError) as err:
            RATE_LIMIT_FAIL_OPEN.labels(operation).inc()
            log.warning("rate limits unavailable, request not limited", operation=operation, error=repr(err))
            return None
        admitted, *used = reply
        states = [BudgetState(budget, float(u)) for (budget, _, _), u in zip(plan, used, strict=True)]
        return bool(admitted), states


def _refusal(states: list[BudgetState], headers: Mapping[str, str]) -> RateLimitError:
    """The 429 for the budget that keeps the caller waiting longest."""
    worst = max(states, key=lambda s: s.seconds_until(1))
    budget = worst.budget
    RATE_LIMITED.labels("key" if budget.scope == API_KEY_SCOPE else "account", budget.unit).inc()
    wait = worst.seconds_until(1)
    message = f"Rate limit reached for {budget.scope}: {budget.limit} {budget.unit} per minute."
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
