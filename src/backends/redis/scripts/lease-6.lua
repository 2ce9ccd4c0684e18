--[[
  lease-6 (6 keys): leases up to `max` visible messages of one queue, highest priority first, FIFO inside one.
  First makes due delayed messages visible and reclaims in-flight messages whose lease deadline
  passed (a crashed or hung consumer): both go back to `ready` under their own order, so they
  keep their place. (Keys and their contents: see enqueue-2.lua.)

  KEYS[1]  {prefix}q:<queue>:ready     ZSET id -> order
  KEYS[2]  {prefix}q:<queue>:delayed   ZSET id -> visibleAt
  KEYS[3]  {prefix}q:<queue>:inflight  ZSET id -> deadline * 1024 + min(attempt, 1023)
  KEYS[4]  {prefix}q:<queue>:signal    LIST wake-up tokens
  KEYS[5]  {prefix}q:<queue>:body      HASH id -> '<order>|<encoded message>'
  KEYS[6]  {prefix}q:<queue>:tries     HASH id -> times leased
  ARGV[1]  max                         most messages to lease (at most 1000)
  ARGV[2]  leaseMs                     lease length
  ARGV[3]  holder                      who leases ('' = nobody named): stored per leased message in
                                       body as '<id>:h' -> '<attempt>|<holder>' (for inspection only;
                                       an id segment has no ':', so it cannot clash with one)

  Returns { waitMs, remaining, firstToken, n, id1, body1, ..., idn, bodyn, then a triple
  i, attempt, token for each message i (1-based) leased before }: remaining is how many messages
  are still ready after this lease; when none is, waitMs is how long until the next delayed
  message becomes visible or the next lease expires (-1 = nothing scheduled), else -1 (the caller
  will not wait). body is the stored '<order>|<message>' (the caller strips the order), or false
  when the message has no body (data damaged outside Concord: the caller dead-letters it as
  malformed). A message's token is its new inflight score: firstToken (digits) for a first
  attempt, which every message of one lease shares, else the one in its triple. (Two items per
  message, not four: the reply is built, sent and parsed once per message.)

  Wake-up tokens: a queue left with ready messages keeps at least one token (so a blocked
  consumer elsewhere wakes for them); a queue left with nothing ready keeps none, or one while
  something is delayed (tokens of messages taken without a wait only wake consumers for nothing).
]]
--#include order
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local max = tonumber(ARGV[1])
local leaseMs = tonumber(ARGV[2])
local SCALE = 1024


-- Makes `ids` visible again under their own order; `attempts[i]` = times leased so far.
local function toReady(ids, attempts)
  local bodies = redis.call('HMGET', KEYS[5], unpack(ids))
  local ready, tries = {}, {}
  for i, id in ipairs(ids) do
    local a = attempts[i]
    ready[2 * i - 1] = orderOf(bodies[i])
    ready[2 * i] = id
    if a > 0 then
      tries[#tries + 1] = id
      tries[#tries + 1] = a
    end
  end
  redis.call('ZADD', KEYS[1], unpack(ready))
  if #tries > 0 then redis.call('HSET', KEYS[6], unpack(tries)) end
end

-- Due delayed messages: their attempts are in tries (none for a message never leased).
local d = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
local dMin = d[2] and tonumber(d[2])
if dMin and dMin <= now then
  local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 1000)
  local known = redis.call('HMGET', KEYS[6], unpack(ids))
  local attempts = {}
  for i = 1, #ids do attempts[i] = tonumber(known[i]) or 0 end
  redis.call('ZREM', KEYS[2], unpack(ids))
  toReady(ids, attempts)
  d = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  dMin = d[2] and tonumber(d[2])
end

-- Leases that ran out: the attempt is in the score (from 1023 on, in tries).
local f = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
local fMin = f[2] and math.floor(tonumber(f[2]) / SCALE)
if fMin and fMin <= now then
  local r = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now * SCALE + SCALE - 1, 'WITHSCORES', 'LIMIT', 0, 1000)
  local ids, attempts = {}, {}
  for i = 1, #r / 2 do
    ids[i] = r[2 * i - 1]
    attempts[i] = tonumber(r[2 * i]) % SCALE
    if attempts[i] == SCALE - 1 then attempts[i] = tonumber(redis.call('HGET', KEYS[6], ids[i])) or attempts[i] end
  end
  redis.call('ZREM', KEYS[3], unpack(ids))
  toReady(ids, attempts)
  f = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
  fMin = f[2] and math.floor(tonumber(f[2]) / SCALE)
end

local out = { -1, 0, '', 0 }
-- The front of ready, without its scores: ZPOPMIN would reply with each score formatted as text
-- (printf), to be parsed back here, and nothing needs them.
local ids = redis.call('ZRANGE', KEYS[1], 0, max - 1)
local n = #ids
local deadline = now + leaseMs
if n > 0 then
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, n - 1)
  local bodies = redis.call('HMGET', KEYS[5], unpack(ids))
  -- Messages that were leased before have a tries entry; while none came back, there is none.
  local prev = {}
  if redis.call('HLEN', KEYS[6]) > 0 then
    local known = redis.call('HMGET', KEYS[6], unpack(ids))
    for i = 1, n do prev[i] = tonumber(known[i]) end
  end
  local base = deadline * SCALE
  -- A first attempt's token as digits, once for all (one number formatted, not one per message).
  local first = string.format('%.0f', base + 1)
  out[3] = first
  out[4] = n
  local flight = {}
  local again = {}
  local holder = ARGV[3] or ''
  local held = holder ~= '' and {} or nil
  local firstHeld = held and ('1|' .. holder)
  for i = 1, n do
    local id = ids[i]
    local attempt = (prev[i] or 0) + 1
    if attempt >= SCALE - 1 then redis.call('HSET', KEYS[6], id, attempt) end
    flight[2 * i - 1] = first
    if attempt > 1 then
      local token = base + math.min(attempt, SCALE - 1)
      flight[2 * i - 1] = token
      again[#again + 1] = i
      again[#again + 1] = attempt
      again[#again + 1] = token
    end
    flight[2 * i] = id
    if held then
      held[2 * i - 1] = id .. ':h'
      held[2 * i] = attempt == 1 and firstHeld or (attempt .. '|' .. holder)
    end
    out[3 + 2 * i] = id
    out[4 + 2 * i] = bodies[i]
  end
  for j = 1, #again do out[4 + 2 * n + j] = again[j] end
  redis.call('ZADD', KEYS[3], unpack(flight))
  if held then redis.call('HSET', KEYS[5], unpack(held)) end
end

local remaining = redis.call('ZCARD', KEYS[1])
out[2] = remaining
if remaining > 0 then
  -- More left: keep a wake-up for the next blocked consumer (unless one is already pending).
  if n > 0 and redis.call('LLEN', KEYS[4]) == 0 then redis.call('LPUSH', KEYS[4], '1') end
else
  -- Drained: tell the caller when to look again.
  local nextAt = dMin
  if n > 0 and (fMin == nil or deadline < fMin) then fMin = deadline end
  if fMin and (nextAt == nil or fMin < nextAt) then nextAt = fMin end
  if nextAt ~= nil then out[1] = math.max(nextAt - now, 1) end
  -- Nothing ready: spent tokens would only wake consumers for nothing. Keep one while something
  -- is delayed, so another blocked consumer re-computes when to look again.
  if dMin == nil then redis.call('DEL', KEYS[4]) else redis.call('LTRIM', KEYS[4], 0, 0) end
end
return out
