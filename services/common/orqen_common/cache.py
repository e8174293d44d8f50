"""Redis as the services use it: a shared cache, and the keys one service writes and another reads.

Redis only ever holds what can be rebuilt (caches, counters, rate-limit buckets), so every
client is opened with short timeouts: a Redis in trouble slows a request by seconds at
most, and callers fall back to the source of truth.

- `auth_cache_key`: the verdict on an API key that every service caches (orqen_common.auth);
  accounting deletes it when the key is revoked, so a revocation holds at once.
- `account_config_key`: a counter accounting increments whenever an account's provider
  credentials, routing preferences or model toggles change. Dispatch keeps each account's
  configuration in memory and reads this one counter per request: a different value means
  the configuration changed, on whichever replica, and is read again.
"""

from __future__ import annotations

from contextlib import AsyncExitStack

from redis.asyncio import Redis

TIMEOUT_SECONDS = 2.0

_AUTH_PREFIX = "orqen:auth:"
_ACCOUNT_CONFIG_PREFIX = "orqen:account-config:"


def auth_cache_key(key_hash: str) -> str:
    return _AUTH_PREFIX + key_hash


def account_config_key(account_id: str) -> str:
    return _ACCOUNT_CONFIG_PREFIX + account_id


def open_redis(stack: AsyncExitStack, url: str) -> Redis:
    """A Redis client with short timeouts, closed with `stack`."""
    redis = Redis.from_url(url, socket_connect_timeout=TIMEOUT_SECONDS, socket_timeout=TIMEOUT_SECONDS)
    stack.push_async_callback(redis.aclose)
    return redis
