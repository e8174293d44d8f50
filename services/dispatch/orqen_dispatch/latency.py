"""Dispatch's own measurements of each model: latency and success, as moving averages in Redis.

Every dispatch replica records into the same hash per model (`orqen:latency:<model>`), and the
orqen/fast rule reads them back. The update is one Lua script, so concurrent calls from any
number of replicas never lose an update. This is a cache: a Redis failure is logged and the
request carries on without measurements.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

KEY_PREFIX = "orqen:latency:"
ALPHA = 0.2
TTL_SECONDS = 7 * 24 * 3600

log = structlog.get_logger(__name__)

# KEYS[1]: the model's hash. ARGV: latency_ms, ok (1|0), alpha, ttl_seconds.
# A failure updates the success average and the count but not the latency: how fast a
# provider says no (an instant 429) says nothing about how fast it answers.
# The first measurement seeds each average, so a new model is not dragged towards zero.
_RECORD = """
local key = KEYS[1]
local latency = tonumber(ARGV[1])
local ok = tonumber(ARGV[2])
local alpha = tonumber(ARGV[3])
redis.call('HINCRBY', key, 'calls', 1)
local success = tonumber(redis.call('HGET', key, 'success'))
if success == nil then success = ok else success = success + alpha * (ok - success) end
redis.call('HSET', key, 'success', tostring(success))
if ok == 1 then
  local avg = tonumber(redis.call('HGET', key, 'latency_ms'))
  if avg == nil then avg = latency else avg = avg + alpha * (latency - avg) end
  redis.call('HSET', key, 'latency_ms', tostring(avg))
end
redis.call('EXPIRE', key, ARGV[4])
return 1
"""


@dataclass(frozen=True, slots=True)
class ModelStats:
    """What dispatch measured of one model: averages are exponentially weighted (EWMA)."""

    latency_ms: float = 0.0  # over successful calls; 0 until one succeeds
    success_rate: float = 0.0
    calls: int = 0


class LatencyStats:
    """Records and reads per-model measurements; never raises for Redis trouble."""

    def __init__(self, redis: Redis, *, alpha: float = ALPHA, ttl_seconds: int = TTL_SECONDS) -> None:
        self._redis = redis
        self._alpha = alpha
        self._ttl_seconds = ttl_seconds
        self._record = redis.register_script(_RECORD)

    async def record(self, model: str, latency_ms: float, ok: bool) -> None:
        """Fold one call into the model's averages."""
        if not math.isfinite(latency_ms):
            return
        args = [repr(max(latency_ms, 0.0)), 1 if ok else 0, repr(self._alpha), self._ttl_seconds]
        try:
            await self._record(keys=[KEY_PREFIX + model], args=args)
        except RedisError as err:
            log.warning("latency stats unavailable", error=str(err))

    async def snapshot(self, models: Iterable[str]) -> dict[str, ModelStats]:
        """The measurements of `models`; a model never measured (or Redis unavailable) is absent."""
        wanted = list(dict.fromkeys(models))
        if not wanted:
            return {}
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for model in wanted:
                    pipe.hmget(KEY_PREFIX + model, "latency_ms", "success", "calls")
                rows = await pipe.execute()
        except RedisError as err:
            log.warning("latency stats unavailable", error=str(err))
            return {}
        stats: dict[str, ModelStats] = {}
        for model, (latency, success, calls) in zip(wanted, rows, strict=True):
            if calls is None:
                continue
            stats[model] = ModelStats(
                latency_ms=float(latency) if latency is not None else 0.0,
                success_rate=float(success) if success is not None else 0.0,
                calls=int(calls),
            )
        return stats
