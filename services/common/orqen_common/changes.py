"""Changes accounting announces, heard by every service that keeps copies of what accounting owns.

Services keep copies of two things accounting owns: the verdict on an API key (orqen_common.auth)
and an account's configuration (orqen_common.account_cache). Checking a copy in Redis on every
use costs each request a round trip in the edge and another in dispatch. So accounting, whenever
it changes one of them, also publishes what changed on one Redis channel (`announce`), right
after the change it makes in Redis, and each service listens (`ChangeWatch`): the message drops
the copy on every replica as it arrives (milliseconds), and until then a copy is used without
asking Redis.

A copy is used that way only while the watch is sure it hears every message: subscribed, and
heard from Redis (a message or the answer to its ping) within `LIVENESS_SECONDS`. Otherwise
(starting, Redis down or unreachable, the connection silently dead) `current()` is None and the
copies are checked in Redis per use, as without a watch. Each subscription starts a new epoch:
a copy trusted under an earlier one may have missed messages, so it is checked once before it is
trusted again.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable
from contextlib import AsyncExitStack

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

log = structlog.get_logger(__name__)

CHANNEL = "orqen:changes"
KEY = "key"  # an API key revoked: its hash
ACCOUNT = "account"  # an account's credentials, preferences, toggles or cache settings: its id
PING_SECONDS = 0.5  # a quiet subscription is pinged this often
LIVENESS_SECONDS = 2.0  # unheard for longer, the subscription may be dead: copies are checked again
_RETRY_SECONDS = (0.1, 5.0)  # the first and the longest wait before subscribing again

Listener = Callable[[str, str], None]


async def announce(redis: Redis, kind: str, subject: str, change: Callable[[Redis], object]) -> None:
    """Make `change` (commands on a pipeline) and then publish that `subject` of `kind` changed.

    One round trip, both or neither (MULTI/EXEC), in this order: a service that hears the message and
    reads Redis sees the change.
    """
    async with redis.pipeline(transaction=True) as pipe:
        change(pipe)
        pipe.publish(CHANNEL, f"{kind}:{subject}")
        await pipe.execute()


class ChangeWatch:
    """A subscription to the changes accounting announces, and whether it can be relied on now."""

    def __init__(self, redis: Redis, clock: Callable[[], float] = time.monotonic) -> None:
        self._redis = redis
        self._clock = clock
        self._listeners: list[Listener] = []
        self._epoch = 0
        self._subscribed = False
        self._heard = -math.inf
        self._task: asyncio.Task[None] | None = None

    def listen(self, listener: Listener) -> None:
        """Call `listener(kind, subject)` for every change heard."""
        self._listeners.append(listener)

    def current(self) -> int | None:
        """The subscription's epoch while every change is being heard; None while that is not sure."""
        if self._subscribed and self._clock() - self._heard <= LIVENESS_SECONDS:
            return self._epoch
        return None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="change-watch")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        wait = _RETRY_SECONDS[0]
        while True:
            try:
                await self._follow()
            except (RedisError, OSError) as err:
                log.warning("not hearing account changes; copies are checked in Redis per use", error=str(err))
            finally:
                if self._subscribed:  # it was working a moment ago: try again soon
                    wait = _RETRY_SECONDS[0]
                self._subscribed = False
            await asyncio.sleep(wait)
            wait = min(2 * wait, _RETRY_SECONDS[1])

    async def _follow(self) -> None:
        async with self._redis.pubsub() as pubsub:
            await pubsub.subscribe(CHANNEL)
            pinged = self._clock()
            while True:
                message = await pubsub.get_message(timeout=PING_SECONDS)
                now = self._clock()
                if message is not None:
                    self._heard = now
                    self._heard_message(message)
                if self._subscribed and now - self._heard > LIVENESS_SECONDS:
                    raise ConnectionError(f"no answer from Redis in {LIVENESS_SECONDS} s")
                if now - pinged >= PING_SECONDS:
                    await pubsub.ping()
                    pinged = now

    def _heard_message(self, message: dict[str, object]) -> None:
        if message["type"] == "subscribe":
            self._epoch += 1
            self._subscribed = True
        elif message["type"] == "message":
            data = message["data"]
            kind, _, subject = (data.decode() if isinstance(data, bytes) else str(data)).partition(":")
            for listener in self._listeners:
                listener(kind, subject)


def open_change_watch(stack: AsyncExitStack, redis: Redis) -> ChangeWatch:
    """A started watch, closed with `stack`."""
    watch = ChangeWatch(redis)
    watch.start()
    stack.push_async_callback(watch.close)
    return watch
