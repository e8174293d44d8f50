"""Per-account settings kept in memory by a service, fresh at every use.

Account settings (saved credentials, routing preferences, model toggles) live in
accounting. Reading them for every request would cost round trips to Postgres, so a
service keeps each account's copy and checks it against one Redis counter per use
(`orqen_common.cache.account_config_key`): accounting increments that counter on every
change, so a change takes effect at once on every replica of every service. When Redis
cannot be read, a copy is trusted until `ttl_seconds` after it was read.

With a `ChangeWatch` (orqen_common.changes), the counter is not read per use: accounting also
announces each change, which marks the account's copy for a check, and a copy checked (or read)
while the watch is sure it hears every change is used as it is until then.

Requests that miss the same account's copy together share one read (per counter value:
a request that saw the counter move never waits for a read that started before).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import KW_ONLY, dataclass, field
from typing import Generic, TypeVar

import grpc
import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from orqen_common.cache import account_config_key
from orqen_common.changes import ACCOUNT, ChangeWatch

log = structlog.get_logger(__name__)

T = TypeVar("T")

# The counter of an account that never changed anything.
_UNCHANGED = b"0"

# Reads an account's settings, given the copy held so far (None at first): returns the
# settings and whether they are complete (a partial read, when accounting failed, is used
# for this request but not kept).
Loader = Callable[[str, T | None], Coroutine[object, None, tuple[T, bool]]]


@dataclass(slots=True)
class _Cached(Generic[T]):
    generation: bytes | None  # None: read while Redis could not say
    expires_at: float
    value: T
    watched: int | None = None  # the watch's epoch it was checked under, until a change is announced


@dataclass(frozen=True, slots=True)
class _Checked:
    """When a check started: the watch's epoch (None: not sure it hears) and the changes heard so far."""

    epoch: int | None
    changes: int


@dataclass(slots=True)
class _Reading(Generic[T]):
    """A read under way, and the counter value it was started for."""

    generation: bytes | None
    task: asyncio.Task[tuple[T, bool]]
    checked: _Checked


@dataclass(eq=False)  # one cache is one object, not a value
class AccountCache(Generic[T]):
    """Each account's copy of what `load` reads, checked against the account's change counter."""

    redis: Redis
    load: Loader[T]
    ttl_seconds: float  # the longest a copy is kept (the only limit while Redis cannot say it changed)
    _: KW_ONLY
    max_accounts: int = 10_000  # copies kept; beyond, the oldest is dropped
    clock: Callable[[], float] = time.monotonic
    watch: ChangeWatch | None = None  # None: the counter is read at every use
    _cache: dict[str, _Cached[T]] = field(default_factory=dict, init=False, repr=False)
    _reading: dict[str, _Reading[T]] = field(default_factory=dict, init=False, repr=False)
    _changes: int = field(default=0, init=False, repr=False)  # account changes heard

    def __post_init__(self) -> None:
        if self.watch is not None:
            self.watch.listen(self._heard)

    async def get(self, account_id: str) -> T:
        """The account's settings: the copy held, unless the counter moved or it expired."""
        checked = _Checked(self.watch.current() if self.watch is not None else None, self._changes)
        cached = self._cache.get(account_id)
        watched = cached is not None and checked.epoch is not None and cached.watched == checked.epoch
        if cached is not None and watched and cached.expires_at > self.clock():
            return cached.value  # no change announced since it was checked: no need to ask Redis
        generation = await self._generation(account_id)
        # Another caller's read may have finished while the counter was asked for: its copy serves this one too.
        cached = self._cache.get(account_id)
        if cached is not None:
            unchanged = generation is None or generation == cached.generation
            if unchanged and cached.expires_at > self.clock():
                cached.watched = self._still(checked) if generation is not None else None
                return cached.value
        reading = self._reading.get(account_id)
        if reading is None or reading.generation != generation:
            task = asyncio.create_task(self.load(account_id, cached.value if cached is not None else None))
            reading = self._reading[account_id] = _Reading(generation, task, checked)
            task.add_done_callback(lambda _: self._settle(account_id, reading))
        # Shielded: one caller giving up must not cancel the read the others wait for.
        value, _ = await asyncio.shield(reading.task)
        return value

    async def _generation(self, account_id: str) -> bytes | None:
        """The account's change counter; None when Redis cannot say."""
        try:
            value = await self.redis.get(account_config_key(account_id))
        except RedisError as err:
            log.warning("redis unavailable; account settings may be stale until their TTL", error=str(err))
            return None
        return value if isinstance(value, bytes) else _UNCHANGED

    def _settle(self, account_id: str, reading: _Reading[T]) -> None:
        """Keep a finished read's complete answer, unless a read for a newer counter replaced it."""
        if self._reading.get(account_id) is not reading:
            return
        del self._reading[account_id]
        if reading.task.cancelled() or reading.task.exception() is not None:
            return
        value, complete = reading.task.result()
        if complete:
            watched = self._still(reading.checked) if reading.generation is not None else None
            self._remember(account_id, reading.generation, value, watched)

    def _remember(self, account_id: str, generation: bytes | None, value: T, watched: int | None) -> None:
        if account_id not in self._cache and len(self._cache) >= self.max_accounts:
            del self._cache[next(iter(self._cache))]  # the oldest entry
        self._cache.pop(account_id, None)
        self._cache[account_id] = _Cached(generation, self.clock() + self.ttl_seconds, value, watched)

    def _still(self, checked: _Checked) -> int | None:
        """The epoch a copy checked since `checked` may be used under, or None if a change may have slipped by."""
        if self.watch is None or checked.epoch is None or self.watch.current() != checked.epoch:
            return None
        return checked.epoch if self._changes == checked.changes else None

    def _heard(self, kind: str, account_id: str) -> None:
        if kind != ACCOUNT:
            return
        self._changes += 1
        cached = self._cache.get(account_id)
        if cached is not None:
            cached.watched = None


async def answer_or_none(call: Awaitable[T], account_id: str, what: str) -> T | None:
    """An accounting answer, or None when accounting fails (the caller goes on without it)."""
    try:
        return await call
    except grpc.aio.AioRpcError as err:
        log.warning(f"{what} unavailable", account_id=account_id, code=err.code().name)
        return None
