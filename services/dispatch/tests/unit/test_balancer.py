"""The balancer alone: order by weight, in-flight calls and latency; ejection, cooling and probing.

Chance comes from a seeded RNG and time from a hand-moved clock, so every figure here is
exact for the seed; the bounds are still the statistical ones (5 standard deviations), so
any seed would pass them.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections import Counter
from collections.abc import Iterable

import pytest
from redis.asyncio import Redis

from orqen.v1 import dispatch_pb2
from orqen_common.deployments import BalancedModel, Deployment
from orqen_dispatch.balancer import (
    DEPLOYMENT_EJECTED,
    DEPLOYMENT_PROBING,
    EJECTED,
    HEALTHY,
    PROBING,
    Balancer,
    DeploymentSlot,
    EjectionPolicy,
)
from orqen_dispatch.latency import ModelStats

SCOPE = "00000000-0000-0000-0000-00000000c0de"
WALL = 1_700_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Latencies:
    """LatencyStats' interface over given figures; records what the balancer measured."""

    def __init__(self, figures: dict[str, float] | None = None) -> None:
        self.figures = figures or {}
        self.recorded: list[tuple[str, bool]] = []

    async def snapshot(self, models: Iterable[str]) -> dict[str, ModelStats]:
        return {m: ModelStats(self.figures[m], 1.0, 10) for m in models if m in self.figures}

    def record(self, model: str, latency_ms: float, ok: bool) -> None:
        self.recorded.append((model, ok))


def balanced(strategy: str = "weighted", **weights: int) -> BalancedModel:
    deployments = tuple(Deployment(name, "openai", weight=weight) for name, weight in weights.items())
    return BalancedModel("gpt-4o", strategy, deployments)


def balancer(clock: Clock | None = None, latencies: Latencies | None = None, seed: int = 7) -> Balancer:
    return Balancer(
        Redis(),  # no deployment here has rate limits: Redis is never called
        latencies or Latencies(),  # type: ignore[arg-type]
        EjectionPolicy(base_s=5.0, max_s=60.0),
        rng=random.Random(seed),
        clock=clock or Clock(),
        wall=lambda: WALL,
    )


async def first_choices(balance: Balancer, model: BalancedModel, requests: int) -> Counter[str]:
    counts: Counter[str] = Counter()
    for _ in range(requests):
        counts[(await balance.order(SCOPE, model))[0].name] += 1
    return counts


def within(count: int, requests: int, share: float) -> bool:
    """`count` of `requests` within 5 standard deviations of a binomial with probability `share`."""
    sd = math.sqrt(requests * share * (1 - share))
    return abs(count - requests * share) <= 5 * sd


async def test_weighted_sends_each_deployment_its_share_of_first_choices() -> None:
    model = balanced(east=1, west=3, south=6)
    requests = 20_000
    counts = await first_choices(balancer(), model, requests)
    for name, share in (("east", 0.1), ("west", 0.3), ("south", 0.6)):
        assert within(counts[name], requests, share), (name, counts)


async def test_every_deployment_is_in_each_order_so_a_failure_can_move_on() -> None:
    orders = [[s.name for s in await balancer(seed=seed).order(SCOPE, balanced(a=1, b=1, c=1))] for seed in range(20)]
    assert all(sorted(order) == ["a", "b", "c"] for order in orders)
    assert len({tuple(order) for order in orders}) > 1  # the rest of the order is by weight too, not fixed


async def test_least_inflight_prefers_the_deployment_with_fewer_calls_under_way() -> None:
    balance = balancer()
    model = balanced("least_inflight", a=1, b=1)
    busy = next(slot for slot in await balance.order(SCOPE, model) if slot.name == "a")
    assert await busy.admit() is None  # one call to a under way
    counts = await first_choices(balance, model, 200)
    assert counts == {"b": 200}
    busy.finish(200)
    counts = await first_choices(balance, model, 2000)
    assert within(counts["a"], 2000, 0.5)


async def test_least_inflight_weighs_calls_under_way_by_the_deployment_weight() -> None:
    balance = balancer()
    model = balanced("least_inflight", small=1, large=4)
    slots = {s.name: s for s in await balance.order(SCOPE, model)}
    calls = [DeploymentSlot(balance, SCOPE, "gpt-4o", slots["large"].deployment) for _ in range(3)]
    for call in calls:
        assert await call.admit() is None
    # 3 calls on a weight of 4 (0.75 each) is less load than 1 call on a weight of 1.
    assert await slots["small"].admit() is None
    assert (await balance.order(SCOPE, model))[0].name == "large"


async def test_lowest_latency_measures_every_deployment_then_keeps_to_the_fastest() -> None:
    figures = {f"deployment:{SCOPE}:gpt-4o:slow": 900.0, f"deployment:{SCOPE}:gpt-4o:fast": 120.0}
    latencies, clock = Latencies(figures), Clock()
    balance = balancer(clock, latencies)
    model = balanced("lowest_latency", slow=5, fast=1, new=1)
    order = [s.name for s in await balance.order(SCOPE, model)]
    assert order == ["new", "fast", "slow"]
    figures[f"deployment:{SCOPE}:gpt-4o:new"] = 400.0
    # The figures are read again once a second, not per request.
    assert [s.name for s in await balance.order(SCOPE, model)] == ["new", "fast", "slow"]
    clock.now += 1.0
    assert [s.name for s in await balance.order(SCOPE, model)] == ["fast", "new", "slow"]


async def test_a_failure_ejects_the_deployment_for_a_cooling_period_then_one_probe_brings_it_back() -> None:
    clock = Clock()
    latencies = Latencies()
    balance = balancer(clock, latencies)
    model = balanced(a=1, b=1)
    a = next(s for s in await balance.order(SCOPE, model) if s.name == "a")
    assert await a.admit() is None
    a.finish(500)
    assert await state(balance, model, "a") == EJECTED
    # Ejected deployments come last, and refuse calls while cooling.
    for _ in range(50):
        order = await balance.order(SCOPE, model)
        assert [s.name for s in order] == ["b", "a"]
    refusal = await order[1].admit()
    assert refusal is not None
    assert (refusal.status, refusal.message, refusal.retry_after) == (503, DEPLOYMENT_EJECTED, 5.0)

    clock.now += 5.0  # cooled down: the next request probes it, first
    assert await state(balance, model, "a") == PROBING
    probe = (await balance.order(SCOPE, model))[0]
    assert probe.name == "a"
    assert await probe.admit() is None
    # Only one probe at a time: others see it among the unavailable.
    concurrent = await balance.order(SCOPE, model)
    assert [s.name for s in concurrent] == ["b", "a"]
    refusal = await concurrent[1].admit()
    assert refusal is not None and refusal.message == DEPLOYMENT_PROBING
    probe.finish(200)
    assert await state(balance, model, "a") == HEALTHY
    await asyncio.sleep(0)  # the figures are recorded off the request's path
    assert (f"deployment:{SCOPE}:gpt-4o:a", False) in latencies.recorded
    assert latencies.recorded[-1] == (f"deployment:{SCOPE}:gpt-4o:a", True)


async def test_each_failed_probe_doubles_the_cooling_period_up_to_the_cap() -> None:
    clock = Clock()
    balance = balancer(clock)
    model = balanced(a=1)
    cooling = []
    for _ in range(6):
        slot = (await balance.order(SCOPE, model))[0]
        assert await slot.admit() is None
        slot.finish(502)
        (status,) = await balance.status(SCOPE, "account", model)
        cooling.append(cooling_s(status))
        clock.now += cooling[-1]
    assert cooling == [5.0, 10.0, 20.0, 40.0, 60.0, 60.0]


async def test_a_429_cools_for_its_retry_after_when_that_is_longer() -> None:
    balance = balancer()
    model = balanced(a=1)
    slot = (await balance.order(SCOPE, model))[0]
    assert await slot.admit() is None
    slot.finish(429, retry_after=30.0)
    (status,) = await balance.status(SCOPE, "account", model)
    assert (status.state, cooling_s(status)) == (EJECTED, 30.0)


@pytest.mark.parametrize("status", [400, 413, 422])
async def test_the_callers_own_mistakes_do_not_eject(status: int) -> None:
    balance = balancer()
    model = balanced(a=1)
    slot = (await balance.order(SCOPE, model))[0]
    assert await slot.admit() is None
    slot.finish(status)
    assert await state(balance, model, "a") == HEALTHY


async def test_calls_started_before_an_ejection_do_not_lengthen_it() -> None:
    balance = balancer()
    model = balanced(a=1)
    calls = [(await balance.order(SCOPE, model))[0] for _ in range(5)]
    for call in calls:
        assert await call.admit() is None
    for call in calls:
        call.finish(503)
    (status,) = await balance.status(SCOPE, "account", model)
    assert cooling_s(status) == 5.0  # one ejection, not five doublings
    assert status.in_flight == 0


async def test_in_flight_counts_admitted_calls_until_they_end_either_way() -> None:
    balance = balancer()
    model = balanced(a=1)
    answered, cancelled = (await balance.order(SCOPE, model))[0], (await balance.order(SCOPE, model))[0]
    assert await answered.admit() is None and await cancelled.admit() is None
    assert (await balance.status(SCOPE, "operator", model))[0].in_flight == 2
    answered.finish(200)
    cancelled.release()
    cancelled.release()  # a second end of the same call changes nothing
    (status,) = await balance.status(SCOPE, "operator", model)
    assert (status.in_flight, status.state, status.source) == (0, HEALTHY, "operator")


def cooling_s(status: dispatch_pb2.DeploymentStatus) -> float:
    """Seconds from the balancer's wall clock (WALL) to the end of the deployment's cooling period."""
    return status.ejected_until.ToNanoseconds() / 1e9 - WALL


async def state(balance: Balancer, model: BalancedModel, name: str) -> str:
    return next(s.state for s in await balance.status(SCOPE, "account", model) if s.name == name)
