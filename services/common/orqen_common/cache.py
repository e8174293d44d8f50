"""Redis as the services use it: a shared cache, and the keys one service writes and another reads.

Redis only ever holds what can be rebuilt (caches, counters, rate-limit buckets), so every
client is opened with short timeouts: a Redis in trouble slows a request by seconds at
most, and callers fall back to the source of truth.

- `AuthCacheKeys`: where the verdict on an API key that every service caches is kept, and
  the seal that proves a service wrote it (orqen_common.auth); accounting deletes it when
  the key is revoked, so a revocation holds at once.
- `account_config_key`: a counter accounting increments whenever an account's provider
  credentials, routing preferences or model toggles change. Dispatch keeps each account's
  configuration in memory and checks it against this counter (orqen_common.account_cache): a
  different value means the configuration changed, on whichever replica, and is read again.
  Accounting also announces both kinds of change (orqen_common.changes), so a service that hears
  the announcements checks a copy only after one, not per request.
"""

from __future__ import annotations

import hashlib
import hmac
from contextlib import AsyncExitStack

from redis.asyncio import Redis

TIMEOUT_SECONDS = 2.0

_AUTH_PREFIX = "orqen:auth:"
_ACCOUNT_CONFIG_PREFIX = "orqen:account-config:"


class AuthCacheKeys:
    """Names and seals of auth cache entries, both derived from the internal token.

    Redis is not trusted with who a key belongs to: whoever can write to it but does not hold
    the internal token can neither find the entry name of a key they invented (an HMAC of the
    key's hash) nor seal a value a service accepts (an HMAC over the key's hash and the value),
    and a value copied from another key's entry carries that key's seal, so it fails here.
    """

    _TAG_BYTES = hashlib.sha256().digest_size

    def __init__(self, internal_token: str) -> None:
        secret = internal_token.encode()
        # Separate keys for naming and sealing, so one never doubles as the other.
        self._name_key = hmac.digest(secret, b"orqen auth cache: entry name", "sha256")
        self._seal_key = hmac.digest(secret, b"orqen auth cache: entry seal", "sha256")

    def name(self, key_hash: str) -> str:
        """The Redis key of the entry for the API key whose SHA-256 is `key_hash`."""
        return _AUTH_PREFIX + hmac.new(self._name_key, key_hash.encode(), "sha256").hexdigest()

    def seal(self, key_hash: str, payload: bytes) -> bytes:
        """`payload` as stored in the entry of `key_hash`: its seal, then the payload."""
        return self._tag(key_hash, payload) + payload

    def unseal(self, key_hash: str, stored: bytes) -> bytes | None:
        """The payload of a stored entry of `key_hash`, or None when no service sealed it for this key."""
        tag, payload = stored[: self._TAG_BYTES], stored[self._TAG_BYTES :]
        return payload if hmac.compare_digest(tag, self._tag(key_hash, payload)) else None

    def _tag(self, key_hash: str, payload: bytes) -> bytes:
        # The key hash has a fixed length (64 hex digits), so hash and payload cannot be re-split.
        return hmac.digest(self._seal_key, key_hash.encode() + payload, "sha256")


def account_config_key(account_id: str) -> str:
    return _ACCOUNT_CONFIG_PREFIX + account_id


def open_redis(stack: AsyncExitStack, url: str) -> Redis:
    """A Redis client with short timeouts, closed with `stack`."""
    redis = Redis.from_url(url, socket_connect_timeout=TIMEOUT_SECONDS, socket_timeout=TIMEOUT_SECONDS)
    stack.push_async_callback(redis.aclose)
    return redis
