"""An account's budgets and key limits are asked of accounting once per TTL, by one request at a time,
and the last known policy stands in while accounting does not answer."""

import asyncio

import grpc

from orqen.v1 import accounting_pb2
from orqen_common.errors import OrqenError
from orqen_edge.budgets import LimitPolicies


class Accounting:
    """Downstream.limit_policy: counts the calls; answers `policy`, or fails while `down`."""

    def __init__(self) -> None:
        self.calls = 0
        self.down = False
        self.policy = accounting_pb2.LimitPolicy(budgets=[accounting_pb2.BudgetDefinition(id="b1")])

    async def limit_policy(self, account_id: str) -> accounting_pb2.LimitPolicy:
        self.calls += 1
        await asyncio.sleep(0.01)
        if self.down:
            raise OrqenError.of(grpc.StatusCode.UNAVAILABLE, "accounting is away")
        return self.policy


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_concurrent_requests_ask_once_and_the_answer_holds_for_the_ttl() -> None:
    accounting, clock = Accounting(), Clock()
    policies = LimitPolicies(accounting, ttl=5, clock=clock)  # type: ignore[arg-type]
    answers = await asyncio.gather(*(policies.get("acct") for _ in range(10)))
    assert accounting.calls == 1 and all(a is accounting.policy for a in answers)
    clock.now = 4.9
    await policies.get("acct")
    assert accounting.calls == 1
    clock.now = 5.1
    await policies.get("acct")
    assert accounting.calls == 2
    policies.forget("acct")  # a change made through this replica holds at once
    await policies.get("acct")
    assert accounting.calls == 3


async def test_while_accounting_is_away_the_last_known_policy_stands_in() -> None:
    accounting, clock = Accounting(), Clock()
    policies = LimitPolicies(accounting, ttl=5, clock=clock)  # type: ignore[arg-type]
    assert await policies.get("other") is not None
    accounting.down = True
    assert await policies.get("never-known") is None  # not limited rather than refused
    clock.now = 10
    assert await policies.get("other") is accounting.policy


async def test_a_cancelled_fetch_does_not_strand_the_requests_waiting_on_it() -> None:
    accounting = Accounting()
    policies = LimitPolicies(accounting, ttl=5)  # type: ignore[arg-type]
    first = asyncio.create_task(policies.get("acct"))
    await asyncio.sleep(0)
    waiting = asyncio.create_task(policies.get("acct"))
    await asyncio.sleep(0)
    first.cancel()
    assert await asyncio.wait_for(waiting, timeout=1) is None  # nothing known yet: not limited
