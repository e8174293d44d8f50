"""Turns at the embedding model, so that a busy worker ranks by keywords instead of failing open.

A plan's run of the model is most of its CPU. When more plans arrive at once than a worker's core
can embed before their callers' deadline, running them all side by side makes every one of them
late: the edge then forwards each request with every tool (fails open), and the saving is lost
exactly when traffic peaks. So a worker runs the model for `at_once` plans at a time; the others
wait for a turn while one can still finish in time, and a plan that could not is ranked by BM25
alone (the keyword mode, a millisecond or two without the model) and answers in time, its mode
`keyword_busy`. How long a plan holds its turn is learnt from the plans that held one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

# Left of the caller's deadline for the answer's way back (serialised, sent, read by the edge's loop).
RESERVE_SECONDS = 0.010
# A turn is waited for only while the plan can still finish with this margin over the time turns take lately.
SAFETY = 1.5
# Before any plan has held a turn: a 500-tool plan on a slow core, replaced by what the plans measure.
FIRST_GUESS_SECONDS = 0.020
SMOOTHING = 0.2  # the weight of each new plan in the time a turn takes
# An estimate no plan has renewed for this long does not keep a plan from an idle model: it is learnt only
# from plans that run the model, so one stalled run must not leave the worker ranking by keywords for good.
STALE_SECONDS = 1.0


class ModelTurns:
    def __init__(self, at_once: int, clock: Callable[[], float] = time.perf_counter) -> None:
        """`at_once` 0: no turns, every plan runs the model when it comes (and a late one fails open at the edge)."""
        self._at_once = at_once
        self._clock = clock
        self._turns = asyncio.Semaphore(max(at_once, 1))
        self._waiting = self._held = 0
        self.expected = FIRST_GUESS_SECONDS  # how long a plan holds its turn, lately
        self._learnt_at = clock()

    @property
    def held(self) -> int:
        """How many plans hold a turn now."""
        return self._held

    def in_time(self, remaining: float | None) -> bool:
        """Whether a plan arriving now, `remaining` seconds before its deadline, can expect to run the model and
        finish in time: behind the plans waiting already, `at_once` at a time.

        With the model idle too: a plan with less time left than a run takes is ranked by keywords
        rather than run late. Only an estimate gone stale (STALE_SECONDS) lets it run the model anyway.

        The margin is on the plan's own run, not on the wait: a wait that runs longer than foreseen
        ends in time anyway (`turn` stops waiting while a run still fits), and a margin on the whole
        queue made a busy worker (16 plans at once, a turn held 22 to 38 ms while two share a core)
        declare a tenth of its plans busy at once that would have had their turn well in time.
        """
        if remaining is None:
            return True
        if not self.held and self._clock() - self._learnt_at > STALE_SECONDS:
            return True
        # Every turn taken: the plans waiting and this one go `at_once` at a time, each as long as lately.
        waits = (self._waiting + 1) / self._at_once if self._turns.locked() else 0.0
        return (waits + SAFETY) * self.expected <= remaining - RESERVE_SECONDS

    @asynccontextmanager
    async def turn(self, remaining: float | None, needed: bool = True) -> AsyncIterator[bool]:
        """A turn at the model, held while the block runs; yields whether the plan is busy (no turn came in time).

        The plan is busy at once when the plans ahead of it would make it late, and after waiting
        when the turns take longer than they did lately. `needed` False: a plan that will not run
        the model (no tools to route, the keyword or passthrough mode) takes no turn and is not busy.
        """
        if not needed or not self._at_once:
            yield False
            return
        if not self.in_time(remaining):
            yield True
            return
        patience = None if remaining is None else remaining - RESERVE_SECONDS - SAFETY * self.expected
        self._waiting += 1
        try:
            async with asyncio.timeout(patience):
                await self._turns.acquire()
        except TimeoutError:
            yield True
            return
        finally:
            self._waiting -= 1
        started = self._clock()
        self._held += 1
        try:
            yield False
        finally:
            self._held -= 1
            self._turns.release()
            self._learnt_at = self._clock()
            self.expected += SMOOTHING * (self._learnt_at - started - self.expected)
