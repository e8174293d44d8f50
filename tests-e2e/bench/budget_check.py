"""The cost of the budget check on the request path, printed by `make bench` after its latency table.

What a request with every kind of limit pays: its limits from its account's policy (kept in the
edge's memory; accounting is asked once here, as once per ORQEN_BUDGET_POLICY_TTL_SECONDS),
admission (one Lua round trip to Redis over the per-minute limits of the key and the account and
the spend and token counters of a daily key budget and a monthly account budget), and the charge
after the call (a second round trip, after the answer's last byte). Beside them, a bare round trip
to the same Redis (a one-line script): what any check in Redis costs on this machine.
"""

from __future__ import annotations

import datetime as dt
import time

from redis.asyncio import Redis

from orqen.v1 import accounting_pb2
from orqen_common.context import Principal
from orqen_edge.budgets import LimitPolicies, admit_call
from orqen_edge.rate_limit import RateLimiter, RateLimits

ACCOUNT, KEY = "00000000-0000-0000-0000-00000000be01", "00000000-0000-0000-0000-00000000be02"


class _Accounting:
    """Accounting's answers, in memory: its policy, asked once here (the edge keeps it for seconds)."""

    async def limit_policy(self, account_id: str) -> accounting_pb2.LimitPolicy:
        return _policy()


class _Ledger:
    """The ledger's sums for the one seeding at the start (nothing spent yet)."""

    async def use(self, account_id: str, api_key_id: str, since: dt.datetime) -> tuple[float, int]:
        return 0.0, 0

    def crossed(self, budget: object, threshold: str, used: float) -> None:
        pass


def _policy() -> accounting_pb2.LimitPolicy:
    return accounting_pb2.LimitPolicy(
        budgets=[
            accounting_pb2.BudgetDefinition(
                id="b1", period="month", max_spend_usd=1e6, max_tokens=10**12, soft_percent=80
            ),
            accounting_pb2.BudgetDefinition(
                id="b2", api_key_id=KEY, period="day", max_spend_usd=1e6, max_tokens=10**12, soft_percent=80
            ),
        ],
        keys=[accounting_pb2.ApiKeyLimits(api_key_id=KEY, allowed_models=["gpt-4o*"], rpm=10**9, tpm=2 * 10**9)],
        key_labels={KEY: "bench (sk-orq-Bnch...)"},
    )


async def budget_check_cost(redis_url: str, requests: int = 2_000) -> dict[str, tuple[float, float]]:
    """p50 and p95 (ms) of admission and of the charge, each timed on its own, over `requests` requests."""
    redis = Redis.from_url(redis_url)
    limiter = RateLimiter(redis, RateLimits(account_rpm=10**9, account_tpm=10**12), ledger=_Ledger())
    policies = LimitPolicies(_Accounting(), ttl=3600)  # type: ignore[arg-type]
    principal = Principal(kind="api_key", account_id=ACCOUNT, api_key_id=KEY)
    admit_ms: list[float] = []
    charge_ms: list[float] = []
    try:
        for n in range(requests + 50):  # the first 50 warm up (script load, seeding, connections)
            started = time.perf_counter()
            admission = await admit_call(policies, limiter, principal, "gpt-4o-mini")
            admitted = time.perf_counter()
            await limiter.charge(admission, tokens=120, spend_usd=0.0001)
            charged = time.perf_counter()
            if n >= 50:
                admit_ms.append((admitted - started) * 1000)
                charge_ms.append((charged - admitted) * 1000)
    finally:
        await redis.aclose()
    return {"admit": _p50_p95(admit_ms), "charge": _p50_p95(charge_ms), "redis": await _round_trip(redis_url)}


async def _round_trip(redis_url: str, requests: int = 2_000) -> tuple[float, float]:
    """p50 and p95 (ms) of the smallest script call: the floor under any check kept in Redis."""
    redis = Redis.from_url(redis_url)
    script = redis.register_script("return 1")
    samples = []
    try:
        for n in range(requests + 50):
            started = time.perf_counter()
            await script(keys=["orqen:bench:noop"], args=[])
            if n >= 50:
                samples.append((time.perf_counter() - started) * 1000)
    finally:
        await redis.aclose()
    return _p50_p95(samples)


def _p50_p95(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return ordered[len(ordered) // 2], ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
