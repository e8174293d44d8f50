"""API keys: format, hashing, and verification with a shared Redis cache in front of accounting."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack

import grpc
import orjson
import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from orqen.v1 import accounting_pb2, accounting_pb2_grpc
from orqen_common.cache import AuthCacheKeys
from orqen_common.context import SERVICE_PRINCIPAL, Principal
from orqen_common.errors import from_rpc_error
from orqen_common.grpc_client import open_channel

API_KEY_PREFIX = "sk-orq-"
# Unknown keys are remembered briefly so a flood of bad keys does not reach Postgres.
_NEGATIVE_TTL_SECONDS = 5

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
    """

    def __init__(
        self,
        redis: Redis,
        accounting: accounting_pb2_grpc.AccountingStub,
        ttl_seconds: int,
        cache_keys: AuthCacheKeys,
    ) -> None:
        self._redis = redis
        self._accounting = accounting
        self._ttl = ttl_seconds
        self._keys = cache_keys

    async def __call__(self, plaintext: str) -> Principal | None:
        if not plaintext.startswith(API_KEY_PREFIX):
            return None
        key_hash = hash_api_key(plaintext)
        cache_key = self._keys.name(key_hash)
        cached = await self._cache_get(cache_key)
        if cached is not None:
            payload = self._keys.unseal(key_hash, cached)
            if payload is not None:
                return _principal_from_cache(payload)
            log.warning("auth cache entry not sealed for this key; ignored and verified with accounting")
        try:
            found: accounting_pb2.AuthenticateResponse = await self._accounting.Authenticate(  # type: ignore[misc]
                accounting_pb2.AuthenticateRequest(key_hash=key_hash), timeout=5
            )
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.NOT_FOUND:
                await self._cache_set(cache_key, self._keys.seal(key_hash, b"{}"), _NEGATIVE_TTL_SECONDS)
                return None
            raise from_rpc_error(err, "accounting") from None
        principal = Principal(
            kind="api_key",
            account_id=found.account_id,
            api_key_id=found.api_key_id,
            account_name=found.account_name,
        )
        payload = orjson.dumps({"a": principal.account_id, "k": principal.api_key_id, "n": principal.account_name})
        await self._cache_set(cache_key, self._keys.seal(key_hash, payload), self._ttl)
        return principal

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


def _principal_from_cache(raw: bytes) -> Principal | None:
    data = orjson.loads(raw)
    if not data:
        return None
    return Principal(kind="api_key", account_id=data["a"], api_key_id=data["k"], account_name=data["n"])


async def authenticate_bearer(
    token: str | None, internal_token: str, verify_api_key: ApiKeyVerifier
) -> Principal | None:
    """The caller behind a bearer token: the internal service token or an API key."""
    if not token:
        return None
    if hmac.compare_digest(token.encode(), internal_token.encode()):
        return SERVICE_PRINCIPAL
    return await verify_api_key(token)


def open_key_verifier(
    stack: AsyncExitStack, redis: Redis, accounting_addr: str, token: str, ttl: int
) -> ApiKeyAuthenticator:
    """An API-key verifier for a service other than accounting; its channel closes with `stack`."""
    channel = open_channel(accounting_addr, token)
    stack.push_async_callback(channel.close)
    return ApiKeyAuthenticator(redis, accounting_pb2_grpc.AccountingStub(channel), ttl, AuthCacheKeys(token))
