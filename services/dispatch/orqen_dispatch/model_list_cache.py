"""Providers' model lists, kept in Redis per provider and credential, refreshed in the background.

A list is fetched with the credentials a call to that provider would use for the account, so
it is kept under a digest of the provider and those credentials: an account with its own key
has its own copy, accounts on the operator's key share one. A copy younger than the TTL is
served as it is; an older one is still served while a refresh runs in the background (one per
copy at a time across replicas, by a short Redis lock). A refresh that fails keeps the last
good copy, which is then served with its age and the failure; a provider that fails before
any list was fetched has no entries and says why. A failed provider is asked again only after
`retry_seconds`, so a request never waits on a provider that just failed. While Redis cannot
be reached, each replica serves and refreshes the copies it last saw itself.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import msgspec
import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from orqen_common.errors import OrqenError
from orqen_common.lru import Lru
from orqen_dispatch.providers.base import Credentials, UpstreamError
from orqen_dispatch.providers.model_lists import ListedModel

log = structlog.get_logger(__name__)

_KEY = "orqen:model-list:v1:"
_ERROR_CHARS = 300  # a provider's error message, as much of it as a status line needs
_LOCAL_COPIES = 1024  # copies each replica keeps in memory for when Redis cannot be read


@runtime_checkable
class ListsModels(Protocol):
    """A provider translator that can read its provider's model list."""

    name: str

    async def list_models(self, credentials: Credentials) -> list[ListedModel]: ...


@dataclass(frozen=True, slots=True)
class ListSource:
    """One connected provider of an account and the credentials its list is read with."""

    provider: ListsModels
    credentials: Mapping[str, str]


ListStatus = Literal["fresh", "stale", "unavailable"]


@dataclass(frozen=True, slots=True)
class ProviderList:
    """A provider's models as served now: the last good copy, how old it is and the last failure."""

    provider: str
    models: tuple[ListedModel, ...]
    fetched_at: float  # unix seconds; 0 when never fetched
    age_seconds: float
    status: ListStatus
    error: str = ""


class _Stored(msgspec.Struct, omit_defaults=True):
    fetched_at: float = 0.0  # 0: no good copy yet
    models: list[ListedModel] = []
    error: str = ""
    failed_at: float = 0.0


_decoder = msgspec.json.Decoder(_Stored)


class ModelListCache:
    """Each (provider, credentials) model list, in Redis with a TTL and refreshed in the background."""

    def __init__(
        self,
        redis: Redis,
        *,
        ttl_seconds: float,
        retry_seconds: float,
        keep_seconds: float,
        fetch_timeout_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self._ttl = ttl_seconds
        self._retry = retry_seconds
        self._keep = int(keep_seconds)
        self._timeout = fetch_timeout_seconds
        self._clock = clock
        self._refreshing: dict[str, asyncio.Task[_Stored]] = {}
        self._local: Lru[str, _Stored] = Lru(_LOCAL_COPIES)

    async def lists(self, sources: Sequence[ListSource]) -> list[ProviderList]:
        """Every source's list, in order; only a source with no copy at all is fetched on the spot."""
        keys = [_key(s) for s in sources]
        found: list[_Stored | None]
        try:
            found = [_decoder.decode(r) if r else None for r in await self._redis.mget(keys)] if keys else []
            for key, copy in zip(keys, found, strict=True):
                if copy is not None:
                    self._remember(key, copy)
        except RedisError as err:
            log.warning("model lists unreadable in Redis; serving this replica's copies", error=str(err))
            found = [self._local.get(k) for k in keys]
        return list(await asyncio.gather(*(self._serve(s, k, f) for s, k, f in zip(sources, keys, found, strict=True))))

    async def _serve(self, source: ListSource, key: str, found: _Stored | None) -> ProviderList:
        stored = found or _Stored()
        now = self._clock()
        failed_recently = stored.failed_at > stored.fetched_at and now - stored.failed_at < self._retry
        if not stored.fetched_at:
            if not failed_recently:
                stored = await asyncio.shield(self._start_refresh(source, key, locked=False))
        elif now - stored.fetched_at >= self._ttl and not failed_recently:
            self._start_refresh(source, key, locked=True)
        return self._as_served(source.provider.name, stored, now)

    def _as_served(self, provider: str, stored: _Stored, now: float) -> ProviderList:
        failing = stored.failed_at > stored.fetched_at
        status: ListStatus
        if not stored.fetched_at:
            status = "unavailable"
        elif failing or now - stored.fetched_at >= self._ttl:
            status = "stale"
        else:
            status = "fresh"
        age = max(0.0, now - stored.fetched_at) if stored.fetched_at else 0.0
        return ProviderList(
            provider, tuple(stored.models), stored.fetched_at, age, status, stored.error if failing else ""
        )

    def _start_refresh(self, source: ListSource, key: str, *, locked: bool) -> asyncio.Task[_Stored]:
        """The refresh of this copy under way in this process, or a new one (requests share it)."""
        task = self._refreshing.get(key)
        if task is None:
            task = asyncio.create_task(self._refresh(source, key, locked))
            self._refreshing[key] = task
            task.add_done_callback(lambda _: self._refreshing.pop(key, None))
        return task

    def _remember(self, key: str, stored: _Stored) -> None:
        self._local.put(key, stored)

    async def _refresh(self, source: ListSource, key: str, locked: bool) -> _Stored:
        """Fetch the list and store it; on failure keep the last good copy and record why.

        `locked`: a background refresh of a copy still served, which one replica at a time makes.
        """
        lock = key + ":lock"
        try:
            if locked and not await self._redis.set(lock, b"1", nx=True, ex=max(1, int(self._timeout) + 1)):
                return _Stored()  # another replica is refreshing this copy
        except RedisError:
            pass  # without Redis every replica refreshes its own copy
        name = source.provider.name
        try:
            models = await asyncio.wait_for(source.provider.list_models(source.credentials), self._timeout)
        except (UpstreamError, OrqenError, TimeoutError) as err:
            error = _describe(err, name)
            log.warning("provider model list failed", provider=name, error=error)
            stored = await self._last_copy(key)
            stored.error, stored.failed_at = error, self._clock()
        else:
            stored = _Stored(fetched_at=self._clock(), models=models)
        self._remember(key, stored)
        try:
            await self._redis.set(key, msgspec.json.encode(stored), ex=self._keep)
            if locked:
                await self._redis.delete(lock)
        except RedisError as err:
            log.warning("model list not saved in Redis", provider=name, error=str(err))
        return stored

    async def _last_copy(self, key: str) -> _Stored:
        """The copy in Redis (a copy to keep serving), else this replica's own, else none."""
        try:
            raw = await self._redis.get(key)
        except RedisError:
            raw = None
        if raw:
            return _decoder.decode(raw)
        local = self._local.get(key)
        return msgspec.structs.replace(local) if local is not None else _Stored()


def _key(source: ListSource) -> str:
    """The copy's Redis key: the provider and a digest of the credentials (never the credentials)."""
    digest = hashlib.sha256(msgspec.json.encode(sorted(source.credentials.items()))).hexdigest()[:32]
    return f"{_KEY}{source.provider.name}:{digest}"


def _describe(err: Exception, provider: str) -> str:
    if isinstance(err, TimeoutError):
        return f"{provider} did not send its model list in time"
    if isinstance(err, UpstreamError):
        return f"{err.status or 502}: {err.message}"[:_ERROR_CHARS]
    assert isinstance(err, OrqenError)
    return err.message[:_ERROR_CHARS]
