"""The response cache: an exact-match cache of completions, per account, in Redis.

The key is the account, the model the request resolves to (what an orqen/* rule chose, the
way the catalogue spells it) and the forwarded canonical request (after the optimizer) with
the fields that do not change the answer left out (`stream`, `stream_options`, `user`,
`metadata`). Whatever the caller opts into is cached, whatever its temperature: asking the
cache is the caller's statement that a stored answer will do.

Each account's entries are bounded in bytes: an account's sorted set orders its entries by
last use, and storing past the cap evicts the least recently used ones (Lua, one round trip,
atomic). Every key of an account shares the hash tag `{account_id}`, so the scripts keep to
one Redis Cluster slot. Entries also expire after their TTL; an expired entry's bookkeeping
is dropped when a lookup finds it gone, or by eviction.

Redis is only a cache here: any failure (or a lookup slower than its deadline) is a miss,
and a store that fails is dropped, never an error to the caller.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass

import structlog
from msgspec import ValidationError, structs
from pydantic import Field
from redis.asyncio import Redis
from redis.exceptions import RedisError

from orqen_common.formats.openai import ChatRequest, encode_request
from orqen_common.settings import OrqenSettings
from orqen_dispatch.cached_answer import CachedAnswer, entry_decoder, entry_encoder

log = structlog.get_logger(__name__)

_PREFIX = "orqen:response-cache:"

# KEYS: entry, lru, sizes, bytes. ARGV: digest, now. The entry, its use noted; or its stale bookkeeping dropped.
_LOOKUP = """
local value = redis.call('GET', KEYS[1])
if value then
  redis.call('ZADD', KEYS[2], 'XX', ARGV[2], ARGV[1])
  return value
end
local size = redis.call('HGET', KEYS[3], ARGV[1])
if size then
  redis.call('HDEL', KEYS[3], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('DECRBY', KEYS[4], size)
end
return false
"""

# KEYS: entry, lru, sizes, bytes. ARGV: digest, value, ttl, now, cap, entry prefix.
# Stores the entry, then evicts the least recently used entries until the account is under its cap.
_STORE = """
local old = redis.call('HGET', KEYS[3], ARGV[1])
if old then redis.call('DECRBY', KEYS[4], old) end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
local size = string.len(ARGV[2])
redis.call('HSET', KEYS[3], ARGV[1], size)
local total = redis.call('INCRBY', KEYS[4], size)
local evicted = 0
while total > tonumber(ARGV[5]) do
  local oldest = redis.call('ZPOPMIN', KEYS[2])
  if #oldest == 0 then break end
  local gone = redis.call('HGET', KEYS[3], oldest[1]) or 0
  redis.call('HDEL', KEYS[3], oldest[1])
  redis.call('DEL', ARGV[6] .. oldest[1])
  total = redis.call('DECRBY', KEYS[4], gone)
  evicted = evicted + 1
end
return evicted
"""

# KEYS: lru, sizes, bytes. ARGV: entry prefix. Deletes every entry of the account: {entries, bytes}.
_PURGE = """
local digests = redis.call('ZRANGE', KEYS[1], 0, -1)
for _, digest in ipairs(digests) do redis.call('DEL', ARGV[1] .. digest) end
local bytes = tonumber(redis.call('GET', KEYS[3]) or 0)
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
return {#digests, bytes}
"""


class ResponseCacheSettings(OrqenSettings):
    """The response cache's limits, as ORQEN_* settings (a mixin of DispatchSettings)."""

    response_cache_account_bytes: int = Field(
        16 * 1024 * 1024, ge=0, description="Bytes of cached answers one account may hold; beyond, LRU eviction."
    )
    response_cache_entry_bytes: int = Field(
        256 * 1024, ge=0, description="Largest answer the response cache stores (encoded bytes)."
    )
    response_cache_lookup_timeout_ms: float = Field(
        50.0, gt=0, description="A cache lookup slower than this is a miss: the request goes upstream."
    )


@dataclass(frozen=True, slots=True)
class CacheKey:
    """Where one request's answer is kept: the account's keys and the request's digest."""

    account_id: str
    digest: str

    def _key(self, part: str) -> str:
        return account_key(self.account_id, part)

    @property
    def entry(self) -> str:
        return self._key("e:") + self.digest

    def keys(self) -> list[str]:
        """The entry and the account's bookkeeping: the scripts' KEYS."""
        return [self.entry, self._key("lru"), self._key("sizes"), self._key("bytes")]


def account_key(account_id: str, part: str) -> str:
    return f"{_PREFIX}{{{account_id}}}:{part}"


def cache_key(account_id: str, model: str, chat: ChatRequest) -> CacheKey:
    """The key of `chat`'s answer for the account when `model` (the resolved model string) answers it."""
    normalized = structs.replace(chat, stream=None, stream_options=None, user=None, metadata=None)
    digest = hashlib.sha256(model.encode() + b"\n" + encode_request(normalized)).hexdigest()
    return CacheKey(account_id, digest)


@dataclass(frozen=True, slots=True)
class CacheUsage:
    entries: int
    bytes: int


class ResponseCache:
    """Lookups, stores and purges of the response cache; every Redis failure is a miss."""

    def __init__(self, redis: Redis, settings: ResponseCacheSettings) -> None:
        self._redis = redis
        self._account_bytes = settings.response_cache_account_bytes
        self._entry_bytes = settings.response_cache_entry_bytes
        self._lookup_timeout_s = settings.response_cache_lookup_timeout_ms / 1000
        self._lookup = redis.register_script(_LOOKUP)
        self._store = redis.register_script(_STORE)
        self._purge = redis.register_script(_PURGE)
        self._storing: set[asyncio.Task[bool]] = set()

    async def get(self, key: CacheKey) -> CachedAnswer | None:
        """The cached answer, or None: not there, unreadable, or Redis failed or was too slow."""
        try:
            async with asyncio.timeout(self._lookup_timeout_s):
                stored = await self._lookup(keys=key.keys(), args=[key.digest, _now_ms()])
        except (RedisError, TimeoutError) as err:
            log.warning("response cache lookup failed; a miss", error=str(err) or type(err).__name__)
            return None
        if not stored:
            return None
        try:
            return entry_decoder.decode(stored)
        except ValidationError:  # written by another version: a miss, replaced by the next store
            return None

    def put_later(self, key: CacheKey, answer: CachedAnswer, ttl_seconds: int) -> None:
        """Store the answer off the request's path: the caller never waits for it."""
        task = asyncio.create_task(self.put(key, answer, ttl_seconds))
        self._storing.add(task)  # a reference, so the task is not collected before it runs
        task.add_done_callback(self._storing.discard)

    async def put(self, key: CacheKey, answer: CachedAnswer, ttl_seconds: int) -> bool:
        """Store the answer for `ttl_seconds`, evicting the account's least recently used; False when not stored."""
        value = entry_encoder.encode(answer)
        if len(value) > min(self._entry_bytes, self._account_bytes):
            return False
        try:
            await self._store(
                keys=key.keys(),
                args=[
                    key.digest,
                    value,
                    ttl_seconds,
                    _now_ms(),
                    self._account_bytes,
                    account_key(key.account_id, "e:"),
                ],
            )
        except RedisError as err:
            log.warning("response cache store failed", error=str(err))
            return False
        return True

    async def usage(self, account_id: str) -> CacheUsage:
        """How many entries and bytes the account holds (expired entries count until dropped)."""
        lru, stored = await asyncio.gather(
            self._redis.zcard(account_key(account_id, "lru")), self._redis.get(account_key(account_id, "bytes"))
        )
        return CacheUsage(int(lru), int(stored or 0))

    async def purge(self, account_id: str) -> CacheUsage:
        """Delete every entry of the account; what it held."""
        keys = [account_key(account_id, part) for part in ("lru", "sizes", "bytes")]
        entries, stored = await self._purge(keys=keys, args=[account_key(account_id, "e:")])
        return CacheUsage(int(entries), int(stored))


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
