"""Dispatch's own measurements of each model: latency and success, as moving averages in Redis.

Every dispatch replica records into the same hash per model (`orqen:latency:<model>`), and the
orqen/fast rule and the balancer's lowest-latency choice read them back. A replica gathers its
calls' measurements and writes them every `FLUSH_SECONDS`, one Lua script per model folding them in
order, so concurrent writes from any number of replicas never lose an update and a request costs
no Redis command of its own (under load, one write carries tens of calls). This is a cache: a
Redis failure is logged and the measurements of that write are dropped.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable
from dataclasses import dataclass

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

KEY_PREFIX = "orqen:latency:"
ALPHA = 0.2
TTL_SECONDS = 7 * 24 * 3600
FLUSH_SECONDS = 0.1  # how long a measurement may wait to be written with the ones after it

log = structlog.get_logger(__name__)

# KEYS[1]: the model's hash. ARGV: alpha, ttl_seconds, then each call's latency_ms and ok (1|0), oldest first.
# A failure updates the success average and the count but not the latency: how fast a
# provider says no (an instant 429) says nothing about how fast it answers.
# The first measurement seeds each average, so a new model is not dragged towards zero.
_RECORD = """
local key = KEYS[1]
local alpha = tonumber(ARGV[1])
local success = tonumber(redis.call('HGET', key, 'success'))
local avg = tonumber(redis.call('HGET', key, 'latency_ms'))
for i = 3, #ARGV, 2 do
  local latency, ok = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
  if success == nil then success = ok else success = success + alpha * (ok - success) end
  if ok == 1 then
    if avg == nil then avg = latency else avg = avg + alpha * (latency - avg) end
  end
end
redis.call('HINCRBY', key, 'calls', (#ARGV - 2) / 2)
redis.call('HSET', key, 'success', tostring(success))
if avg ~= nil then redis.call('HSET', key, 'latency_ms', tostring(avg)) end
redis.call('EXPIRE', key, ARGV[2])
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

    def __init__(
        self,
        redis: Redis,
        *,
        alpha: float = ALPHA,
        ttl_seconds: int = TTL_SECONDS,
        flush_seconds: float = FLUSH_SECONDS,
    ) -> None:
        self._redis = redis
        self._alpha = alpha
        self._ttl_seconds = ttl_seconds
        self._flush_seconds = flush_seconds
        self._record = redis.register_script(_RECORD)
        self._pending: dict[str, list[str | int]] = {}  # per model: latency_ms, ok, latency_ms, ok...
        self._timer: asyncio.Task[None] | None = None

    def record(self, model: str, latency_ms: float, ok: bool) -> None:
        """Fold one call into the model's averages, written with the others within `flush_seconds`."""
        if not math.isfinite(latency_ms):
            return
        self._pending.setdefault(model, []).extend((repr(max(latency_ms, 0.0)), 1 if ok else 0))
        if self._timer is None:
            self._timer = asyncio.get_running_loop().create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        try:
            await asyncio.sleep(self._flush_seconds)
        finally:
            self._timer = None
        await self.flush()

    async def flush(self) -> None:
        """Write every measurement recorded so far: one script per model, in one round trip."""
        pending, self._pending = self._pending, {}
        if not pending:
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for model, calls in pending.items():
                    await self._record(
                        keys=[KEY_PREFIX + model], args=[repr(self._alpha), self._ttl_seconds, *calls], client=pipe
                    )
                await pipe.execute()
        except RedisError as err:
            log.warning("latency stats unavailable; these measurements are dropped", error=str(err))

    async def close(self) -> None:
        """Write what is still waiting (at shutdown)."""
        if self._timer is not None:
            self._timer.cancel()
        await self.flush()

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
