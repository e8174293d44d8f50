"""The limiters' Lua scripts: each runs atomically in Redis, so every replica sees every
check-and-spend whole.

LIMITS_SCRIPT is the one per-minute limit of the product: the edge's per-key and per-account
limits and period budgets (orqen_edge.rate_limit) and dispatch's per-deployment limits
(orqen_dispatch.balancer, buckets only). A bucket's `used` units drain continuously at `limit`
per minute, so it frees up gradually (a sliding window) rather than all at once each minute.
"""

# KEYS: one counter each. ARGV: now_ms, window_ms, mode ("admit" or "charge"), the request's
# reservation token, reservation_ms, reconcile_ms, then one per counter: "kind limit a b c".
#   kind "b", a per-minute bucket {used, at}: a = need (admit), b = cost.
#   kind "p", a period counter {used, reserved, est, r:<token>, checked, sweep, soft, hard}:
#     b = cost (charge), c = the soft threshold.
# admit: nothing happens unless every counter exists and has room; the answer is
#   {-1, index of each missing period counter...} when some need seeding, else
#   {admitted, then per counter: used, reserved, 1 when this request claimed its reconciliation}.
# charge: spends the costs, settles the request's reservations; the answer is {1, then per
#   counter: used, reserved, crossed (1 soft threshold, 2 limit, 3 both)}.
LIMITS_SCRIPT = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local admit = ARGV[3] == 'admit'
local token = 'r:' .. ARGV[4]
local reservation_ms = tonumber(ARGV[5])
local reconcile_ms = tonumber(ARGV[6])
local spec = {}
for i = 1, #KEYS do
  local kind, limit, a, b, c = string.match(ARGV[6 + i], '^(%a) (%S+) (%S+) (%S+) (%S+)$')
  spec[i] = {kind = kind, limit = tonumber(limit), a = tonumber(a), b = tonumber(b), c = tonumber(c)}
end
local function fmt(x) return string.format('%.17g', x) end

-- What the request reservations of a counter hold, with the expired ones dropped.
local function sweep(key)
  local fields = redis.call('HGETALL', key)
  local total = 0
  for j = 1, #fields, 2 do
    if string.sub(fields[j], 1, 2) == 'r:' then
      local value = fields[j + 1]
      local sep = string.find(value, ' ', 1, true)
      if tonumber(string.sub(value, sep + 1)) < now then
        redis.call('HDEL', key, fields[j])
      else
        total = total + tonumber(string.sub(value, 1, sep - 1))
      end
    end
  end
  return total
end

local state, missing = {}, {}
local admitted = 1
for i, key in ipairs(KEYS) do
  local limit = spec[i].limit
  if spec[i].kind == 'b' then
    local h = redis.call('HMGET', key, 'used', 'at')
    local last = tonumber(h[2]) or now
    -- A replica whose clock is behind the last writer's drains nothing rather than refilling.
    local drained = math.max(now - last, 0) * limit / window
    local used = math.max((tonumber(h[1]) or 0) - drained, 0)
    state[i] = {used = used, at = math.max(now, last)}
    if admit and used + spec[i].a > limit then admitted = 0 end
  else
    local h = redis.call('HMGET', key, 'used', 'reserved', 'est', 'checked', 'sweep')
    if not h[1] then
      missing[#missing + 1] = i
    else
      local reserved = tonumber(h[2]) or 0
      if admit and (tonumber(h[5]) or 0) < now then
        reserved = sweep(key)
        redis.call('HSET', key, 'reserved', fmt(reserved), 'sweep', now + reconcile_ms)
      end
      state[i] = {used = tonumber(h[1]), reserved = reserved, est = tonumber(h[3]), checked = tonumber(h[4]) or 0}
      if admit and state[i].used + reserved >= limit then admitted = 0 end
    end
  end
end
if admit and #missing > 0 then
  local answer = {-1}
  for _, i in ipairs(missing) do answer[#answer + 1] = i end
  return answer
end

local answer = {admitted}
for i, key in ipairs(KEYS) do
  local limit = spec[i].limit
  local s = state[i]
  local flag = 0
  if spec[i].kind == 'b' then
    local cost = spec[i].b
    if admitted == 1 and cost > 0 then
      s.used = s.used + cost
      redis.call('HSET', key, 'used', fmt(s.used), 'at', string.format('%d', s.at))
      -- Gone once fully drained: an idle caller costs no memory.
      redis.call('PEXPIRE', key, math.ceil(s.used * window / limit) + 1000)
    end
    s.reserved = 0
  elseif s and admit then
    if admitted == 1 then
      -- Nothing known of this budget's costs yet: hold the rest of it until the first request ends.
      local hold = s.est or (limit - s.used - s.reserved)
      s.reserved = s.reserved + hold
      redis.call('HSET', key, 'reserved', fmt(s.reserved), token, fmt(hold) .. ' ' .. (now + reservation_ms))
      if now - s.checked >= reconcile_ms then
        redis.call('HSET', key, 'checked', now)
        flag = 1
      end
    end
  elseif s then
    local held = redis.call('HGET', key, token)
    if held then
      redis.call('HDEL', key, token)
      s.reserved = math.max(s.reserved - tonumber(string.sub(held, 1, string.find(held, ' ', 1, true) - 1)), 0)
    end
    local cost = spec[i].b
    local before = s.used
    s.used = s.used + cost
    local fields = {'used', fmt(s.used), 'reserved', fmt(s.reserved)}
    if cost > 0 then
      fields[5], fields[6] = 'est', fmt(math.max(cost, 0.9 * (s.est or cost) + 0.1 * cost))
    end
    redis.call('HSET', key, unpack(fields))
    local soft = spec[i].c
    if before < soft and s.used >= soft and redis.call('HSETNX', key, 'soft', now) == 1 then flag = flag + 1 end
    if before < limit and s.used >= limit and redis.call('HSETNX', key, 'hard', now) == 1 then flag = flag + 2 end
  end
  if s then
    answer[#answer + 1] = fmt(s.used)
    answer[#answer + 1] = fmt(s.reserved)
  else
    answer[#answer + 1] = '0'
    answer[#answer + 1] = '0'
  end
  answer[#answer + 1] = flag
end
return answer
"""

# KEYS: period counters. ARGV: now_ms, reconcile_ms, then per counter the ledger's use and when
# the counter expires (ms). A missing counter starts from the ledger's use; an existing one is
# raised to it (never lowered: it also counts requests the ledger has not stored yet).
SEED_SCRIPT = """
local now = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  local ledger = tonumber(ARGV[1 + i * 2])
  local used = tonumber(redis.call('HGET', key, 'used'))
  if not used then
    redis.call('HSET', key, 'used', string.format('%.17g', ledger), 'reserved', '0', 'checked', now,
      'sweep', now + tonumber(ARGV[2]))
    redis.call('PEXPIREAT', key, ARGV[2 + i * 2])
  else
    if ledger > used then redis.call('HSET', key, 'used', string.format('%.17g', ledger)) end
    redis.call('HSET', key, 'checked', now)
  end
end
return #KEYS
"""
