"""Per-minute budgets as leaky buckets in Redis, checked and spent atomically by one Lua script.

A bucket's `used` units drain continuously at `limit` per minute, so a budget frees up
gradually (a sliding window) rather than all at once at the top of each minute. The edge's
per-key and per-account rate limits (orqen_edge.rate_limit) and dispatch's per-deployment
limits (orqen_dispatch.balancer) both run this one script.
"""

from __future__ import annotations

# KEYS: one bucket each. ARGV: now_ms, window_ms, enforce ("1" or "0"), then per bucket
# limit, need, cost. A bucket is a hash {used, at}: `used` units, last written at `at` ms.
# When enforcing, nothing is spent unless every bucket has room for its `need`; the
# answer is {admitted, used of each bucket after the call}.
LEAKY_BUCKETS_LUA = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local enforce = ARGV[3] == '1'
local used, at = {}, {}
local admitted = 1
for i, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[1 + i * 3])
  local need = tonumber(ARGV[2 + i * 3])
  local state = redis.call('HMGET', key, 'used', 'at')
  local last = tonumber(state[2]) or now
  -- A replica whose clock is behind the last writer's drains nothing rather than refilling.
  local drained = math.max(now - last, 0) * limit / window
  used[i] = math.max((tonumber(state[1]) or 0) - drained, 0)
  at[i] = math.max(now, last)
  if enforce and used[i] + need > limit then
    admitted = 0
  end
end
local answer = {admitted}
for i, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[1 + i * 3])
  local cost = tonumber(ARGV[3 + i * 3])
  if admitted == 1 and cost > 0 then
    used[i] = used[i] + cost
    redis.call('HSET', key, 'used', string.format('%.17g', used[i]), 'at', string.format('%d', at[i]))
    -- Gone once fully drained: an idle caller costs no memory.
    redis.call('PEXPIRE', key, math.ceil(used[i] * window / limit) + 1000)
  end
  answer[#answer + 1] = string.format('%.17g', used[i])
end
return answer
"""
