"""A worker's turns at the embedding model: who waits, who is ranked by keywords, what a turn is learnt to take."""

from __future__ import annotations

import asyncio

from orqen_optimizer.turns import FIRST_GUESS_SECONDS, RESERVE_SECONDS, SAFETY, STALE_SECONDS, ModelTurns


async def held(turns: ModelTurns, release: asyncio.Event, started: asyncio.Event) -> None:
    """Hold a turn (as a plan running the model does) until `release` is set."""
    async with turns.turn(None) as busy:
        assert not busy
        started.set()
        await release.wait()


async def hold_all(turns: ModelTurns, count: int) -> tuple[asyncio.Event, list[asyncio.Task[None]]]:
    release, tasks = asyncio.Event(), []
    for _ in range(count):
        started = asyncio.Event()
        tasks.append(asyncio.create_task(held(turns, release, started)))
        await started.wait()
    return release, tasks


async def test_a_plan_without_a_deadline_waits_for_its_turn() -> None:
    turns = ModelTurns(1)
    release, holders = await hold_all(turns, 1)
    order: list[str] = []

    async def waiter() -> None:
        async with turns.turn(None) as busy:
            order.append("busy" if busy else "turn")

    waiting = asyncio.create_task(waiter())
    await asyncio.sleep(0.05)
    assert order == []  # still waiting: nobody gave up on it
    release.set()
    await asyncio.gather(waiting, *holders)
    assert order == ["turn"]


async def test_a_plan_that_the_plans_ahead_would_make_late_is_busy_at_once() -> None:
    turns = ModelTurns(2)
    release, holders = await hold_all(turns, 2)
    # Both turns taken: it would wait about half a turn, then run one with the margin.
    enough = (0.5 + SAFETY) * turns.expected + RESERVE_SECONDS
    assert turns.in_time(enough + 0.001) and not turns.in_time(enough - 0.001)
    async with turns.turn(enough - 0.001) as busy:
        assert busy
    release.set()
    await asyncio.gather(*holders)


async def test_a_plan_too_close_to_its_deadline_for_one_run_is_busy_even_with_the_model_idle() -> None:
    turns = ModelTurns(2)
    assert not turns.held
    async with turns.turn(RESERVE_SECONDS + SAFETY * turns.expected / 2) as busy:
        assert busy  # it would run late: keywords answer in time
    async with turns.turn(RESERVE_SECONDS + SAFETY * turns.expected * 2) as busy:
        assert not busy
    release, holders = await hold_all(turns, 1)  # one turn of two taken: the same rule
    async with turns.turn(RESERVE_SECONDS + SAFETY * turns.expected / 2) as busy:
        assert busy
    release.set()
    await asyncio.gather(*holders)


async def test_a_stale_estimate_does_not_keep_an_idle_model_from_plans() -> None:
    now = [0.0]
    turns = ModelTurns(2, clock=lambda: now[0])
    async with turns.turn(None):
        now[0] += 5.0  # one plan held its turn five seconds (a stalled machine)
    assert turns.expected > 0.15  # by the estimate, no plan could finish within 150 ms
    async with turns.turn(0.150) as busy:
        assert busy  # the estimate is fresh: it decides
    now[0] += STALE_SECONDS + 0.001  # no plan has run the model since: the estimate is stale
    release, holders = await hold_all(turns, 1)
    async with turns.turn(0.150) as busy:
        assert busy  # with a plan at the model, the estimate decides whatever its age
    release.set()
    await asyncio.gather(*holders)
    now[0] += STALE_SECONDS + 0.001
    stale = turns.expected
    async with turns.turn(0.150) as busy:
        assert not busy  # the model idle and the estimate stale: this plan runs it, and teaches the estimate
        now[0] += 0.01
    assert turns.expected < stale


async def test_a_plan_whose_turn_does_not_come_in_time_stops_waiting_and_is_busy() -> None:
    turns = ModelTurns(1)
    release, holders = await hold_all(turns, 1)
    # In time by the estimate, but the turn is held past its patience: it gives up, leaving room for keywords.
    remaining = RESERVE_SECONDS + SAFETY * turns.expected * 2 + 0.02
    async with turns.turn(remaining) as busy:
        assert busy
    release.set()
    await asyncio.gather(*holders)
    async with turns.turn(None) as busy:  # the turn it gave up on is free again
        assert not busy


async def test_plans_that_need_no_model_take_no_turn() -> None:
    turns = ModelTurns(1)
    release, holders = await hold_all(turns, 1)
    async with turns.turn(0.0, needed=False) as busy:
        assert not busy
    release.set()
    await asyncio.gather(*holders)


async def test_without_turns_every_plan_runs_the_model_however_late() -> None:
    turns = ModelTurns(0)
    async with turns.turn(0.0) as first, turns.turn(0.0) as second:
        assert not first and not second


async def test_what_a_turn_takes_is_learnt_from_the_plans_that_held_one() -> None:
    now = [0.0]
    turns = ModelTurns(1, clock=lambda: now[0])
    assert turns.expected == FIRST_GUESS_SECONDS
    for _ in range(30):
        async with turns.turn(None):
            now[0] += 0.004  # each plan holds its turn 4 ms
    assert abs(turns.expected - 0.004) < 0.0001
    async with turns.turn(None):
        now[0] += 0.104  # one slow plan moves the estimate by a fifth of the difference
    assert abs(turns.expected - 0.024) < 0.0001
