--[[
  lease: leases up to `max` visible messages of one queue, highest priority first, FIFO inside one.
  First makes due delayed messages visible and reclaims in-flight messages whose lease deadline
  passed (a crashed or hung consumer): both go back to `ready` under their original score, so
  they keep their place in the order.

  KEYS[1]  {prefix}q:<queue>:ready     ZSET id -> order score
  KEYS[2]  {prefix}q:<queue>:delayed   ZSET id -> visibleAt
  KEYS[3]  {prefix}q:<queue>:inflight  ZSET id -> lease deadline
  KEYS[4]  {prefix}q:<queue>:signal    LIST wake-up tokens
  KEYS[5]  {prefix}q:<queue>:body      HASH id -> encoded message
  KEYS[6]  {prefix}q:<queue>:meta      HASH id -> '<score>:<attempts>:<lease tag>'
  ARGV[1]  max                         most messages to lease (at most 1000)
  ARGV[2]  leaseMs                     lease length
  ARGV[3]  tag                         unique per call; the n-th lease's token is '<attempts>:<tag>.<n>'

  Returns { waitMs, id1, body1, attempt1, token1, id2, ... } where waitMs is how long until the
  next delayed message becomes visible or the next lease expires (-1 = nothing scheduled, or
  `max` messages were leased so the caller will not wait), and body is false when the message
  has no body (data damaged outside Concord: the caller dead-letters it as malformed).
]]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local max = tonumber(ARGV[1])
local leaseMs = tonumber(ARGV[2])

-- Moves `ids` (from index `from`) back to ready under their original scores; a lease tag is
-- dropped, so the lease token it formed stops working.
local function toReady(from, ids)
  if #ids == 0 then return end
  local metas = redis.call('HMGET', KEYS[6], unpack(ids))
  local ready, meta = {}, {}
  for i, id in ipairs(ids) do
    local score, attempts = string.match(metas[i] or '0:0:', '^([^:]*):([^:]*):')
    ready[#ready + 1] = score
    ready[#ready + 1] = id
    meta[#meta + 1] = id
    meta[#meta + 1] = score .. ':' .. attempts .. ':'
  end
  redis.call('ZREM', from, unpack(ids))
  redis.call('ZADD', KEYS[1], unpack(ready))
  redis.call('HSET', KEYS[6], unpack(meta))
end

toReady(KEYS[2], redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 1000))
toReady(KEYS[3], redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, 1000))

local out = { -1 }
local popped = redis.call('ZPOPMIN', KEYS[1], max)
local n = #popped / 2
if n > 0 then
  local ids = {}
  for i = 1, n do ids[i] = popped[2 * i - 1] end
  local bodies = redis.call('HMGET', KEYS[5], unpack(ids))
  local metas = redis.call('HMGET', KEYS[6], unpack(ids))
  local deadline = now + leaseMs
  local meta, flight = {}, {}
  for i, id in ipairs(ids) do
    local score, attempts = string.match(metas[i] or '', '^([^:]*):([^:]*):')
    -- No meta (data damaged outside Concord): take the score it was popped with.
    if not score then score, attempts = popped[2 * i], '0' end
    local attempt = tonumber(attempts) + 1
    local token = attempt .. ':' .. ARGV[3] .. '.' .. i
    meta[#meta + 1] = id
    meta[#meta + 1] = score .. ':' .. token
    flight[#flight + 1] = deadline
    flight[#flight + 1] = id
    out[#out + 1] = id
    out[#out + 1] = bodies[i]
    out[#out + 1] = attempt
    out[#out + 1] = token
  end
  redis.call('HSET', KEYS[6], unpack(meta))
  redis.call('ZADD', KEYS[3], unpack(flight))
  -- More left: pass the wake-up on to the next blocked consumer (unless one is already pending).
  if redis.call('LLEN', KEYS[4]) == 0 and redis.call('ZCARD', KEYS[1]) > 0 then
    redis.call('LPUSH', KEYS[4], '1')
  end
end

-- Only a caller left wanting more may wait: tell it when to look again.
if n < max then
  local nextAt = nil
  local d = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  if d[2] then nextAt = tonumber(d[2]) end
  local f = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
  if f[2] and (nextAt == nil or tonumber(f[2]) < nextAt) then nextAt = tonumber(f[2]) end
  if nextAt ~= nil then out[1] = math.max(nextAt - now, 1) end
end
return out
