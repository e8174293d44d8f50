"""What dispatch needs to know of an account for each request, kept in memory.

An account's saved provider credentials (opened), its fallback chain and the models it
switched off live in accounting. Reading them for every request would cost two or three
round trips to Postgres, so each account's copy is kept here and checked against one
Redis counter per request (`orqen_common.cache.account_config_key`): accounting
increments it on every change, so a saved or deleted credential, new preferences or a
toggle take effect at once on every dispatch replica. When Redis cannot be read, a copy
is trusted until `ttl_seconds` after it was read.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import grpc
import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from orqen.v1 import accounting_pb2, accounting_pb2_grpc
from orqen_common.cache import account_config_key
from orqen_dispatch.credentials import CredentialStore, SavedCredentials

log = structlog.get_logger(__name__)

T = TypeVar("T")

# The counter of an account that never changed anything.
_UNCHANGED = b"0"


@dataclass(frozen=True, slots=True)
class AccountConfig:
    credentials: SavedCredentials  # opened secrets by provider; never logged
    fallback_models: tuple[str, ...] = ()
    disabled_models: frozenset[str] = frozenset()


@dataclass(slots=True)
class _Cached:
    generation: bytes | None  # None: read while Redis could not say
    expires_at: float
    config: AccountConfig


class AccountConfigs:
    def __init__(
        self,
        store: CredentialStore,
        accounting: accounting_pb2_grpc.AccountingAsyncStub,
        redis: Redis,
        ttl_seconds: float,
        *,
        max_accounts: int = 10_000,
        rpc_timeout_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._accounting = accounting
        self._redis = redis
        self._ttl = ttl_seconds
        self._max_accounts = max_accounts
        self._timeout = rpc_timeout_seconds
        self._clock = clock
        self._cache: dict[str, _Cached] = {}

    async def get(self, account_id: str) -> AccountConfig:
        generation = await self._generation(account_id)
        cached = self._cache.get(account_id)
        if cached is not None:
            unchanged = generation is None or generation == cached.generation
            if unchanged and cached.expires_at > self._clock():
                return cached.config
            if not unchanged:
                self._store.invalidate(account_id)
        ref = accounting_pb2.AccountRef(account_id=account_id)
        credentials, preferences, toggles = await asyncio.gather(
            self._store.for_account(account_id),
            self._read(self._accounting.GetRoutingPreferences(ref, timeout=self._timeout), account_id),
            self._read(self._accounting.ListModelToggles(ref, timeout=self._timeout), account_id),
        )
        previous = cached.config if cached is not None else AccountConfig({})
        config = AccountConfig(
            credentials=credentials,
            fallback_models=(
                tuple(preferences.fallback_models) if preferences is not None else previous.fallback_models
            ),
            disabled_models=(
                frozenset(t.model for t in toggles.toggles if not t.enabled)
                if toggles is not None
                else previous.disabled_models
            ),
        )
        if preferences is not None and toggles is not None:
            self._remember(account_id, generation, config)
        return config

    async def _generation(self, account_id: str) -> bytes | None:
        """The account's change counter; None when Redis cannot say."""
        try:
            value = await self._redis.get(account_config_key(account_id))
        except RedisError as err:
            log.warning("redis unavailable; account configuration may be stale until its TTL", error=str(err))
            return None
        return value if isinstance(value, bytes) else _UNCHANGED

    async def _read(self, call: Awaitable[T], account_id: str) -> T | None:
        """An accounting answer, or None when accounting fails: routing then goes on without it."""
        try:
            return await call
        except grpc.aio.AioRpcError as err:
            log.warning("account routing settings unavailable", account_id=account_id, code=err.code().name)
            return None

    def _remember(self, account_id: str, generation: bytes | None, config: AccountConfig) -> None:
        if account_id not in self._cache and len(self._cache) >= self._max_accounts:
            del self._cache[next(iter(self._cache))]  # the oldest entry
        self._cache.pop(account_id, None)
        self._cache[account_id] = _Cached(generation, self._clock() + self._ttl, config)
