"""What dispatch needs to know of an account for each request, kept in memory.

An account's saved provider credentials (opened), its fallback chain and the models it
switched off live in accounting; each account's copy is kept here and checked against
its change counter per request (orqen_common.account_cache).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from redis.asyncio import Redis

from orqen.v1 import accounting_pb2, accounting_pb2_grpc
from orqen_common.account_cache import AccountCache, answer_or_none
from orqen_dispatch.credentials import CredentialStore, SavedCredentials


@dataclass(frozen=True, slots=True)
class AccountConfig:
    credentials: SavedCredentials  # opened secrets by provider; never logged
    fallback_models: tuple[str, ...] = ()
    disabled_models: frozenset[str] = frozenset()


class AccountConfigs:
    def __init__(
        self,
        store: CredentialStore,
        accounting: accounting_pb2_grpc.AccountingAsyncStub,
        redis: Redis,
        ttl_seconds: float,
        *,
        rpc_timeout_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._accounting = accounting
        self._timeout = rpc_timeout_seconds
        self._cache = AccountCache(redis, self._load, ttl_seconds, on_change=store.invalidate, clock=clock)

    async def get(self, account_id: str) -> AccountConfig:
        return await self._cache.get(account_id)

    async def _load(self, account_id: str, previous: AccountConfig | None) -> tuple[AccountConfig, bool]:
        ref = accounting_pb2.AccountRef(account_id=account_id)
        what = "account routing settings"
        credentials, preferences, toggles = await asyncio.gather(
            self._store.for_account(account_id),
            answer_or_none(self._accounting.GetRoutingPreferences(ref, timeout=self._timeout), account_id, what),
            answer_or_none(self._accounting.ListModelToggles(ref, timeout=self._timeout), account_id, what),
        )
        # Whatever accounting could not say now stays as it was.
        previous = previous or AccountConfig({})
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
        return config, preferences is not None and toggles is not None
