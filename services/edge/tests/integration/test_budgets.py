"""Period budgets on a real Redis: reservations bound concurrent overshoot, a lost counter is
re-seeded from the ledger (never a fresh budget), crossings are reported once, and the refusal
names the budget and when it resets.

The ledger here is accounting's answer held in memory (what GetBudgetUse would sum); the
end-to-end test (tests-e2e/tests/test_budgets.py) runs the real one.
"""

import asyncio
import datetime as dt
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from orqen_edge.rate_limit import (
    SPEND,
    TOKENS,
    CallerLimits,
    PeriodBudget,
    RateLimiter,
    RateLimitError,
    RateLimits,
)

# Redis expires the counters at the period's end by its own clock, so the period is placed around
# the real time (never a fixed date, which would be over by the time the test runs).
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
DAY_START = NOW - dt.timedelta(hours=21)
RESETS = DAY_START + dt.timedelta(days=1)


class Ledger:
    """What the ledger has stored per scope; records what the limiter asks and reports."""

    def __init__(self) -> None:
        self.stored: dict[str, tuple[float, int]] = {}
        self.asked: list[str] = []
        self.crossings: list[tuple[str, str, float]] = []

    async def use(self, account_id: str, api_key_id: str, since: dt.datetime) -> tuple[float, int]:
        self.asked.append(api_key_id)
        return self.stored.get(api_key_id, (0.0, 0))

    def crossed(self, budget: PeriodBudget, threshold: str, used: float) -> None:
        self.crossings.append((budget.unit, threshold, used))


def _budget(unit: str, limit: float, *, key: str = "", soft: float = 80) -> PeriodBudget:
    owner = "API key 'ci (sk-orq-AbCd...)'" if key else "account"
    return PeriodBudget("b-" + unit, "acct", key, owner, "day", unit, limit, limit * soft / 100, DAY_START, RESETS)


@pytest.fixture
async def redis(orqen_redis_db_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(orqen_redis_db_url)  # a database of this test's own
    yield client
    await client.aclose()


def _limiter(redis: Redis, ledger: Ledger) -> RateLimiter:
    return RateLimiter(redis, RateLimits(), ledger=ledger, clock=lambda: NOW.timestamp(), redis_deadline=300)


async def test_a_spent_budget_is_a_429_that_names_it_and_when_it_resets(redis: Redis) -> None:
    ledger = Ledger()
    limiter = _limiter(redis, ledger)
    limits = CallerLimits(periods=(_budget(SPEND, 1.0, key="key"),))
    admitted = await limiter.admit("acct", "key", limits)
    await limiter.charge(admitted, tokens=100, spend_usd=1.25)  # the call already happened: it may overdraw
    with pytest.raises(RateLimitError) as refused:
        await limiter.admit("acct", "key", limits)
    err = refused.value
    assert err.http_status == 429 and err.code == "budget_exceeded"
    assert err.message == (
        "Budget exceeded: the daily spend budget of API key 'ci (sk-orq-AbCd...)' ($1.00) is spent; "
        f"it resets at {RESETS:%Y-%m-%dT%H:%M:%SZ}."
    )
    assert err.retry_after == 3 * 3600  # until the period's end
    assert [(unit, threshold) for unit, threshold, _ in ledger.crossings] == [(SPEND, "soft"), (SPEND, "hard")]


async def test_concurrent_callers_overshoot_by_at_most_one_request(redis: Redis, orqen_redis_db_url: str) -> None:
    # 16 callers on two replicas (each its own connection) spend a 1,000-token budget at 64 tokens a call.
    ledger = Ledger()
    second = Redis.from_url(orqen_redis_db_url)
    limiters = [_limiter(redis, ledger), _limiter(second, ledger)]
    limits = CallerLimits(periods=(_budget(TOKENS, 1_000),))
    spent = refused_final = 0

    async def caller(n: int) -> None:
        nonlocal spent, refused_final
        limiter = limiters[n % 2]
        while True:
            try:
                admitted = await limiter.admit("acct", f"key-{n}", limits)
            except RateLimitError as err:
                if "is spent" in err.message:
                    refused_final += 1
                    return
                await asyncio.sleep(0.001)  # held by requests in flight: retry
                continue
            await asyncio.sleep(0.002)  # the upstream call
            spent += 64
            await limiter.charge(admitted, tokens=64)

    try:
        await asyncio.gather(*(caller(n) for n in range(16)))
    finally:
        await second.aclose()
    assert refused_final == 16
    assert 1_000 <= spent <= 1_000 + 64  # at most one request's worth past the budget
    stored = await redis.hget(_budget(TOKENS, 1_000).redis_key, "used")
    assert float(stored or 0) == spent


async def test_a_lost_counter_is_seeded_from_the_ledger_not_from_zero(redis: Redis) -> None:
    ledger = Ledger()
    limiter = _limiter(redis, ledger)
    limits = CallerLimits(periods=(_budget(SPEND, 10.0), _budget(TOKENS, 5_000)))
    await limiter.charge(await limiter.admit("acct", "key", limits), tokens=4_000, spend_usd=2.0)
    assert ledger.asked == [""]  # the counters started from the ledger's sums (then 0)

    # Redis restarts empty; the ledger has stored the request meanwhile.
    ledger.stored[""] = (2.0, 4_000)
    await redis.flushdb()
    admitted = await limiter.admit("acct", "key", limits)
    assert ledger.asked == ["", ""]
    await limiter.charge(admitted, tokens=1_500, spend_usd=0.5)
    with pytest.raises(RateLimitError) as refused:
        await limiter.admit("acct", "key", limits)
    assert "the daily tokens budget of account (5,000 tokens) is spent" in refused.value.message


async def test_corrections_raise_a_counter_to_the_ledger_never_lower_it(redis: Redis) -> None:
    ledger = Ledger()
    limiter = _limiter(redis, ledger)
    budget = _budget(SPEND, 10.0)
    await limiter.charge(await limiter.admit("acct", "key", CallerLimits(periods=(budget,))), 0, 3.0)
    ledger.stored[""] = (1.0, 0)  # behind: events not stored yet
    await limiter.correct([budget])
    assert await limiter.period_use([budget]) == {budget.redis_key: 3.0}
    ledger.stored[""] = (7.5, 0)  # ahead: charges this replica never saw (Redis was unreachable)
    await limiter.correct([budget])
    assert await limiter.period_use([budget]) == {budget.redis_key: 7.5}


async def test_a_failed_call_releases_what_it_held(redis: Redis) -> None:
    ledger = Ledger()
    limiter = _limiter(redis, ledger)
    limits = CallerLimits(periods=(_budget(TOKENS, 1_000),))
    first = await limiter.admit("acct", "key", limits)
    # Nothing is known of this budget's costs yet: the first request holds the rest of it.
    with pytest.raises(RateLimitError) as held:
        await limiter.admit("acct", "key", limits)
    assert held.value.message.startswith("Budget nearly spent") and held.value.retry_after == 1
    await limiter.charge(first, tokens=0)  # the call failed
    await limiter.charge(first, tokens=500)  # a second charge of one admission does nothing
    await limiter.admit("acct", "key", limits)
    assert await limiter.period_use(limits.periods) == {limits.periods[0].redis_key: 0.0}


async def test_the_soft_threshold_is_reported_once_per_period(redis: Redis) -> None:
    ledger = Ledger()
    limiter = _limiter(redis, ledger)
    limits = CallerLimits(periods=(_budget(TOKENS, 1_000, soft=50),))
    warnings = []
    for _ in range(4):
        admitted = await limiter.admit("acct", "key", limits)
        warnings.append(admitted.warning)
        await limiter.charge(admitted, tokens=200)
    assert ledger.crossings == [(TOKENS, "soft", 600.0)]
    # Each request admitted past the threshold carries it to the request log.
    assert warnings == ["", "", "", "at 60% of the daily tokens budget of account (1,000 tokens)"]


async def test_once_a_minute_one_request_claims_the_counters_correction_from_the_ledger(redis: Redis) -> None:
    ledger = Ledger()
    now = [NOW.timestamp()]
    limiter = RateLimiter(redis, RateLimits(), ledger=ledger, clock=lambda: now[0], redis_deadline=300)
    limits = CallerLimits(periods=(_budget(SPEND, 10.0),))
    await limiter.charge(await limiter.admit("acct", "key", limits), tokens=0, spend_usd=1.0)
    ledger.stored[""] = (4.0, 0)  # charges an edge made while Redis was unreachable
    await limiter.charge(await limiter.admit("acct", "key", limits), tokens=0, spend_usd=1.0)
    assert ledger.asked == [""]  # seeded once; within the minute nobody corrects
    now[0] += 61
    admissions = [await limiter.admit("acct", "key", limits) for _ in range(3)]
    await asyncio.sleep(0.05)  # the correction runs off the request path
    assert ledger.asked == ["", ""]  # one request of the three claimed it
    assert await limiter.period_use(limits.periods) == {limits.periods[0].redis_key: 4.0}
    for admission in admissions:
        await limiter.charge(admission, tokens=0)
