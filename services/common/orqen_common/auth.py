"""API keys: format, hashing, and verification with a shared Redis cache in front of accounting."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Protocol

import grpc
import orjson
import structlog
from pydantic import SecretStr
from redis.asyncio import Redis
from redis.exceptions import RedisError

from orqen.v1 import accounting_pb2, accounting_pb2_grpc
from orqen_common.cache import AuthCacheKeys
from orqen_common.changes import KEY, ChangeWatch
from orqen_common.context import SERVICE_PRINCIPAL, Principal
from orqen_common.errors import from_rpc_error
from orqen_common.grpc_client import open_channel
from orqen_common.lru import Lru

API_KEY_PREFIX = "sk-orq-"
_KEPT_VERDICTS = 10_000  # verdicts on known keys kept in process (with a ChangeWatch)
# Unknown keys are remembered briefly so a flood of bad keys does not reach Postgres.
_NEGATIVE_TTL_SECONDS = 5
# Accounting cannot answer (down, restarting, overloaded): a cached verdict may stand in.
_ACCOUNTING_AWAY = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)

log = structlog.get_logger(__name__)

ApiKeyVerifier = Callable[[str], Awaitable[Principal | None]]


def generate_api_key() -> str:
    """A new API key: the sk-orq- prefix and 256 bits of randomness."""
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(plaintext: str) -> str:
    """The SHA-256 hex digest under which a key is stored; keys are never stored in clear."""
    return hashlib.sha256(plaintext.encode()).hexdigest()


def display_prefix(plaintext: str) -> str:
    """The part of a key that is safe to show in listings."""
    return plaintext[: len(API_KEY_PREFIX) + 4]


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class ApiKeyAuthenticator:
    """Resolves API keys to accounts: Redis first, then accounting's Authenticate.

    Redis is only a cache: when it is down, every lookup goes to accounting. An entry is
    believed only when its seal (orqen_common.cache.AuthCacheKeys) is this key's; any other
    entry counts as a miss, so writing to Redis is not a way to mint keys.

    A verdict is fresh for `ttl_seconds`; after that accounting is asked again, but while
    accounting is unavailable (restarting) a verdict up to `stale_seconds` older still holds,
    so chat with a known key keeps working through an accounting restart. A revoked key's entry
    is deleted at once by accounting, so no stale verdict outlives a revocation.

    With a `ChangeWatch` (orqen_common.changes), a fresh verdict on a known key is also kept in
    this process and used without asking Redis while the watch is sure it hears every change:
    accounting announces each revocation, which drops the key's copy on every replica as the
    message arrives. Unknown keys are not kept here (Redis remembers them briefly).
    """

    def __init__(
        self,
        redis: Redis,
        accounting: accounting_pb2_grpc.AccountingStub,
        ttl_seconds: int,
        cache_keys: AuthCacheKeys,
        stale_seconds: int = 0,
        watch: ChangeWatch | None = None,
    ) -> None:
        self._redis = redis
        self._accounting = accounting
        self._ttl = ttl_seconds
        self._stale = stale_seconds
        self._keys = cache_keys
        self._watch = watch
        # Fresh verdicts on known keys, by key hash, with the watch's epoch they were read under.
        self._kept: Lru[str, tuple[_Verdict, int]] = Lru(_KEPT_VERDICTS)
        self._revocations = 0  # heard so far: a verdict read while one was heard is not kept
        if watch is not None:
            watch.listen(self._heard)

    async def __call__(self, plaintext: str) -> Principal | None:
        if not plaintext.startswith(API_KEY_PREFIX):
            return None
        key_hash = hash_api_key(plaintext)
        epoch, revocations = self._watch.current() if self._watch is not None else None, self._revocations
        kept = self._kept.get(key_hash) if epoch is not None else None
        if kept is not None and kept[1] == epoch and time.time() - kept[0].verified_at < self._ttl:
            return kept[0].principal
        cache_key = self._keys.name(key_hash)
        cached = await self._cached(key_hash, cache_key)
        age = time.time() - cached.verified_at if cached is not None else float("inf")
        if cached is not None and age < self._ttl:
            self._keep(key_hash, cached, epoch, revocations)
            return cached.principal
        try:
            found: accounting_pb2.AuthenticateResponse = await self._accounting.Authenticate(  # type: ignore[misc]
                accounting_pb2.AuthenticateRequest(key_hash=key_hash), timeout=5
            )
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.NOT_FOUND:
                await self._cache_set(cache_key, self._keys.seal(key_hash, b"{}"), _NEGATIVE_TTL_SECONDS)
                return None
            if cached is not None and age < self._ttl + self._stale and err.code() in _ACCOUNTING_AWAY:
                log.warning("accounting unavailable; using the key's last verdict", verified_at=cached.verified_at)
                return cached.principal
            raise from_rpc_error(err, "accounting") from None
        principal = Principal(
            kind="api_key",
            account_id=found.account_id,
            api_key_id=found.api_key_id,
            account_name=found.account_name,
        )
        verdict = _Verdict(principal, time.time())
        fields = {"a": principal.account_id, "k": principal.api_key_id, "n": principal.account_name}
        payload = orjson.dumps(fields | {"t": verdict.verified_at})
        await self._cache_set(cache_key, self._keys.seal(key_hash, payload), self._ttl + self._stale)
        self._keep(key_hash, verdict, epoch, revocations)
        return principal

    def _keep(self, key_hash: str, verdict: _Verdict, epoch: int | None, revocations: int) -> None:
        """Keep a known key's fresh verdict here, if no revocation can have slipped by since it was read."""
        if verdict.principal is None or epoch is None or self._watch is None:
            return
        if self._watch.current() != epoch or self._revocations != revocations:
            return
        self._kept.put(key_hash, (verdict, epoch))

    def _heard(self, kind: str, key_hash: str) -> None:
        if kind == KEY:
            self._revocations += 1
            self._kept.pop(key_hash)

    async def _cached(self, key_hash: str, cache_key: str) -> _Verdict | None:
        """The cached verdict on a key, fresh or not; None when there is none this service sealed."""
        stored = await self._cache_get(cache_key)
        if stored is None:
            return None
        payload = self._keys.unseal(key_hash, stored)
        if payload is None:
            log.warning("auth cache entry not sealed for this key; ignored and verified with accounting")
            return None
        data = orjson.loads(payload)
        if not data:  # a key accounting does not know, remembered briefly
            return _Verdict(None, time.time())
        principal = Principal(kind="api_key", account_id=data["a"], api_key_id=data["k"], account_name=data["n"])
        # Entries written before verdicts carried their time expire within the TTL anyway: fresh.
        return _Verdict(principal, data.get("t", time.time()))

    async def _cache_get(self, key: str) -> bytes | None:
        try:
            value = await self._redis.get(key)
            return value if isinstance(value, bytes) else None
        except RedisError as err:
            log.warning("auth cache unavailable", error=str(err))
            return None

    async def _cache_set(self, key: str, value: bytes, ttl: int) -> None:
        try:
            await self._redis.set(key, value, ex=ttl)
        except RedisError as err:
            log.warning("auth cache unavailable", error=str(err))


@dataclass(frozen=True, slots=True)
class _Verdict:
    """What the auth cache says about a key (None: unknown to accounting), and when accounting said it."""

    principal: Principal | None
    verified_at: float


async def authenticate_bearer(
    token: str | None, internal_token: str, verify_api_key: ApiKeyVerifier
) -> Principal | None:
    """The caller behind a bearer token: the internal service token or an API key."""
    if not token:
        return None
    if hmac.compare_digest(token.encode(), internal_token.encode()):
        return SERVICE_PRINCIPAL
    return await verify_api_key(token)


class KeyVerifierSettings(Protocol):
    """What a service's settings give its API-key verifier (ServiceSettings with AccountingAddress)."""

    @property
    def accounting_addr(self) -> str: ...
    @property
    def internal_token(self) -> SecretStr: ...
    @property
    def auth_cache_ttl_seconds(self) -> int: ...
    @property
    def auth_cache_stale_seconds(self) -> int: ...


def open_key_verifier(
    stack: AsyncExitStack, redis: Redis, settings: KeyVerifierSettings, watch: ChangeWatch | None = None
) -> ApiKeyAuthenticator:
    """An API-key verifier for a service other than accounting; its channel closes with `stack`."""
    token = settings.internal_token.get_secret_value()
    channel = open_channel(settings.accounting_addr, token)
    stack.push_async_callback(channel.close)
    return ApiKeyAuthenticator(
        redis,
        accounting_pb2_grpc.AccountingStub(channel),
        settings.auth_cache_ttl_seconds,
        AuthCacheKeys(token),
        settings.auth_cache_stale_seconds,
        watch,
    )
