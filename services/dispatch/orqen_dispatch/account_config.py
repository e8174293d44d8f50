"""What dispatch needs to know of an account for each request, kept in memory.

An account's saved provider credentials (opened), its fallback chain, the models it
switched off and its load-balanced models live in accounting; each account's copy is kept
here and checked against its change counter per request (orqen_common.account_cache), which
accounting bumps on every change: a credential saved through any replica is used by the next
request on all.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import structlog
from redis.asyncio import Redis

from orqen.v1 import accounting_pb2, accounting_pb2_grpc
from orqen_common.account_cache import AccountCache, answer_or_none
from orqen_common.changes import ChangeWatch
from orqen_common.deployments import BalancedModel, from_message
from orqen_common.errors import OrqenError
from orqen_common.response_cache import DEFAULT_CACHE_TTL_SECONDS
from orqen_dispatch.credentials import CredentialStore, SavedCredentials

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class AccountConfig:
    credentials: SavedCredentials  # opened secrets by provider; never logged
    fallback_models: tuple[str, ...] = ()
    disabled_models: frozenset[str] = frozenset()
    # The response cache: whether requests use it unless they say otherwise, and for how long.
    cache_enabled: bool = False
    cache_ttl_seconds: int = DEFAULT_CACHE_TTL_SECONDS
    balanced_models: Mapping[str, BalancedModel] = field(default_factory=dict)  # by logical model


class AccountConfigs:
    """Each account's `AccountConfig`, read from accounting when it changed or its copy expired."""

    def __init__(
        self,
        store: CredentialStore,
        accounting: accounting_pb2_grpc.AccountingAsyncStub,
        redis: Redis,
        ttl_seconds: float,
        *,
        rpc_timeout_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        watch: ChangeWatch | None = None,
    ) -> None:
        self._store = store
        self._accounting = accounting
        self._timeout = rpc_timeout_seconds
        self._cache = AccountCache(redis, self._load, ttl_seconds, clock=clock, watch=watch)

    async def get(self, account_id: str) -> AccountConfig:
        """The account's configuration (do not mutate it); OrqenError only when none was ever read."""
        return await self._cache.get(account_id)

    async def _load(self, account_id: str, previous: AccountConfig | None) -> tuple[AccountConfig, bool]:
        ref = accounting_pb2.AccountRef(account_id=account_id)
        what = "account routing settings"
        credentials, preferences, toggles, cache, deployments = await asyncio.gather(
            self._credentials(account_id, previous),
            answer_or_none(self._accounting.GetRoutingPreferences(ref, timeout=self._timeout), account_id, what),
            answer_or_none(self._accounting.ListModelToggles(ref, timeout=self._timeout), account_id, what),
            answer_or_none(self._accounting.GetCacheSettings(ref, timeout=self._timeout), account_id, what),
            answer_or_none(self._accounting.ListModelDeployments(ref, timeout=self._timeout), account_id, what),
        )
        # Whatever accounting could not say now stays as it was.
        previous = previous or AccountConfig({})
        config = AccountConfig(
            credentials=credentials if credentials is not None else previous.credentials,
            fallback_models=(
                tuple(preferences.fallback_models) if preferences is not None else previous.fallback_models
            ),
            disabled_models=(
                frozenset(t.model for t in toggles.toggles if not t.enabled)
                if toggles is not None
                else previous.disabled_models
            ),
            cache_enabled=cache.enabled if cache is not None else previous.cache_enabled,
            cache_ttl_seconds=cache.ttl_seconds if cache is not None else previous.cache_ttl_seconds,
            balanced_models=(
                _balanced(account_id, deployments) if deployments is not None else previous.balanced_models
            ),
        )
        answered = (credentials, preferences, toggles, cache, deployments)
        return config, all(answer is not None for answer in answered)

    async def _credentials(self, account_id: str, previous: AccountConfig | None) -> SavedCredentials | None:
        """The account's saved credentials; None when accounting fails and a copy was read before.

        Without any copy the failure is raised: a request must not go out with the operator's
        keys in place of credentials the account may have saved.
        """
        try:
            return await self._store.read(account_id)
        except OrqenError as err:
            if previous is None:
                raise
            log.warning("accounting unreachable; using expired credentials", account_id=account_id, error=str(err))
            return None


def _balanced(account_id: str, found: accounting_pb2.ModelDeploymentsList) -> dict[str, BalancedModel]:
    """The account's balanced models by name; one its stored row no longer passes the checks is left out."""
    models = {}
    for message in found.models:
        try:
            models[message.model] = from_message(message)
        except OrqenError as err:
            log.warning("stored deployments are invalid; model not balanced", account_id=account_id, error=str(err))
    return models
