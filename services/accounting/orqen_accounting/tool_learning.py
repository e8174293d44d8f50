"""The writer of the router's learned tool usage, and its account-API views (stats, reset).

The layout and the decay are orqen_common.tool_learning's. Each request whose answer called
tools updates its account's counts in one Lua script (atomic: the session's last tool is read
and replaced in the same step), and a batch of requests is one pipelined round trip. Only the
tools the caller offered are learned, so a name a model made up teaches nothing.

Bounded per account: a hash keeps its MAX_PAIRS strongest tools (pruned when it holds twice
that), the account at most MAX_KEYS hashes (the least recently updated go first), and every key
expires after IDLE_SECONDS without an update (by then its counts have decayed to 1/256).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from orqen.v1 import accounting_pb2, events_pb2
from orqen_common.tool_learning import (
    HALF_LIFE_SECONDS,
    RELATIONS,
    TOTAL,
    account_prefix,
    decayed,
    index_key,
    weight,
)

log = structlog.get_logger(__name__)

MAX_PAIRS = 32
MAX_KEYS = 2_000
SESSION_SECONDS = 3_600  # a session's last tool is forgotten after an hour without a call
IDLE_SECONDS = int(8 * HALF_LIFE_SECONDS)
MAX_TOOL_CHARS = 256  # longer names are not tool names any caller's SDK accepts
STATS_KEYS = 100  # the most recently updated hashes read for the calibration's top pairs
TOP_PAIRS = 10
_DELETE_CHUNK = 500

# The relation names are orqen_common.tool_learning's RELATIONS, and "session:" its sessions' keys.
# KEYS[1]: the account's index; ARGV: prefix, session id ("" none), top-routed tool ("" none),
# weight, now, session TTL, idle TTL, MAX_PAIRS, MAX_KEYS, then the tools called, in order.
_LEARN = """
local index = KEYS[1]
local prefix, session, top = ARGV[1], ARGV[2], ARGV[3]
local w, now = ARGV[4], tonumber(ARGV[5])
local session_ttl, idle_ttl = tonumber(ARGV[6]), tonumber(ARGV[7])
local max_pairs, max_keys = tonumber(ARGV[8]), tonumber(ARGV[9])
local touched = {}
local function count(relation, anchor, tool)
  local key = prefix .. relation .. ':' .. anchor
  redis.call('HINCRBYFLOAT', key, tool, w)
  touched[key] = true
end
local called, last, skey = {}, false, false
if session ~= '' then
  skey = prefix .. 'session:' .. session
  local fields = redis.call('HGETALL', skey)
  for i = 1, #fields, 2 do
    if fields[i] == '' then last = fields[i + 1] else called[fields[i]] = true end
  end
end
local answered = {}
if top ~= '' then count('asked', top, '') end
for i = 10, #ARGV do
  local tool = ARGV[i]
  if last then
    count('follows', last, '')
    count('follows', last, tool)
  end
  last = tool
  if top ~= '' and not answered[tool] then
    answered[tool] = true
    count('asked', top, tool)
  end
  if not called[tool] then
    count('co_used', tool, '')
    for other in pairs(called) do
      count('co_used', tool, other)
      count('co_used', other, tool)
    end
    called[tool] = true
  end
end
if skey then
  local fields = {'', last}
  for tool in pairs(called) do
    fields[#fields + 1] = tool
    fields[#fields + 1] = '1'
  end
  redis.call('HSET', skey, unpack(fields))
  redis.call('EXPIRE', skey, session_ttl)
  redis.call('ZADD', index, now, skey)
end
for key in pairs(touched) do
  redis.call('ZADD', index, now, key)
  redis.call('EXPIRE', key, idle_ttl)
  if redis.call('HLEN', key) > 2 * max_pairs + 1 then
    local fields = redis.call('HGETALL', key)
    local ranked = {}
    for i = 1, #fields, 2 do
      if fields[i] ~= '' then ranked[#ranked + 1] = {fields[i], tonumber(fields[i + 1])} end
    end
    table.sort(ranked, function(a, b) return a[2] > b[2] end)
    for i = max_pairs + 1, #ranked do redis.call('HDEL', key, ranked[i][1]) end
  end
end
local excess = redis.call('ZCARD', index) - max_keys
if excess > 0 then
  local dropped = redis.call('ZPOPMIN', index, excess)
  for i = 1, #dropped, 2 do redis.call('DEL', dropped[i]) end
end
redis.call('EXPIRE', index, idle_ttl)
return 1
"""


def learnable_calls(event: events_pb2.RequestCompleted) -> list[str]:
    """The tools the answer called that the caller offered (all of them when none were listed), in order."""
    offered = set(event.tools_offered)
    return [
        name for name in event.tools_called if name and len(name) <= MAX_TOOL_CHARS and (not offered or name in offered)
    ]


class ToolLearningStore:
    """Per-account learned tool usage in Redis: written on ingest, shown and reset through accounting."""

    def __init__(
        self,
        redis: Redis,
        clock: Callable[[], float] = time.time,
        *,
        max_pairs: int = MAX_PAIRS,
        max_keys: int = MAX_KEYS,
    ) -> None:
        self._redis = redis
        self._learn = redis.register_script(_LEARN)
        self._clock = clock
        self._max_pairs = max_pairs
        self._max_keys = max_keys

    async def learn(self, events: Sequence[events_pb2.RequestCompleted]) -> int:
        """Count the tools each event's answer called; how many events taught something.

        Redis failing costs only this learning: it is logged, never raised (the request log
        is already stored and the batch must not be redelivered for it).
        """
        now = self._clock()
        w = repr(weight(now))
        pipe = self._redis.pipeline(transaction=False)
        taught = 0
        for event in events:
            calls = learnable_calls(event)
            if not calls:
                continue
            account = event.context.account_id
            top = event.trace.candidates[0].name if event.trace.candidates else ""
            args: list[str | int] = [
                account_prefix(account),
                event.context.session_id,
                top if len(top) <= MAX_TOOL_CHARS else "",
                w,
                repr(now),
                SESSION_SECONDS,
                IDLE_SECONDS,
                self._max_pairs,
                self._max_keys,
                *calls,
            ]
            await self._learn(keys=[index_key(account)], args=args, client=pipe)
            taught += 1
        if not taught:
            return 0
        try:
            await pipe.execute()
        except RedisError as err:
            log.warning("tool learning not updated: redis unavailable", error=str(err), events=taught)
            return 0
        return taught

    async def summary(self, account_id: str) -> accounting_pb2.ToolLearning:
        """How much is learned, and the strongest pairs among the most recently updated statistics."""
        index = index_key(account_id)
        keys = int(await self._redis.zcard(index))
        recent = [k.decode() for k in await self._redis.zrevrange(index, 0, STATS_KEYS - 1) if isinstance(k, bytes)]
        prefix = account_prefix(account_id)
        anchored = []
        for key in recent:
            relation, _, anchor = key.removeprefix(prefix).partition(":")
            if relation in RELATIONS:
                anchored.append((key, relation, anchor))
        pipe = self._redis.pipeline(transaction=False)
        for key, _, _ in anchored:
            pipe.hgetall(key)
        now = self._clock()
        pairs: list[accounting_pb2.LearnedPair] = []
        for (_, relation, anchor), fields in zip(anchored, await pipe.execute(), strict=True):
            counts = {name.decode(): float(value) for name, value in fields.items()}
            total = counts.pop(TOTAL, 0.0)
            pairs += [
                accounting_pb2.LearnedPair(
                    relation=relation,
                    anchor=anchor,
                    tool=tool,
                    count=round(decayed(value, now), 3),
                    probability=round(min(value / total, 1.0), 3) if total else 0.0,
                )
                for tool, value in counts.items()
            ]
        pairs.sort(key=lambda p: (-p.count, p.relation, p.anchor, p.tool))
        return accounting_pb2.ToolLearning(keys=keys, pairs=len(pairs), top_pairs=pairs[:TOP_PAIRS])

    async def reset(self, account_id: str) -> int:
        """Delete everything learned for the account (its sessions included); how many keys went."""
        index = index_key(account_id)
        deleted = 0
        while keys := await self._redis.zrange(index, 0, _DELETE_CHUNK - 1):
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.delete(*keys)
                pipe.zrem(index, *keys)
                removed, _ = await pipe.execute()
            deleted += int(removed)
        await self._redis.delete(index)
        return deleted
