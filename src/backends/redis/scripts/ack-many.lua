--[[
  ack-many: removes leased messages of one queue for good, each only if its lease is still
  held. A lease whose deadline passed is lost even before another consumer takes the message:
  it is made visible again here. (Keys and their contents: see enqueue.lua.)

  KEYS[1]  {prefix}q:<queue>:ready     ZSET id -> order * 2 + (1 if it has a tries entry)
  KEYS[2]  {prefix}q:<queue>:inflight  ZSET id -> deadline * 1024 + min(attempt, 1023)
  KEYS[3]  {prefix}q:<queue>:signal    LIST wake-up tokens
  KEYS[4]  {prefix}q:<queue>:body      HASH id -> '<order>|<encoded message>'
  KEYS[5]  {prefix}q:<queue>:tries     HASH id -> times leased
  ARGV[2i - 1]  id segment of the i-th ack (at most 1000 acks)
  ARGV[2i]      its lease token (the inflight score it was leased with)

  Returns one item per ack: 1, or 0 when that lease was lost (expired, re-leased or moved).
]]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local SCALE = 1024
local ids = {}
for i = 1, #ARGV, 2 do ids[#ids + 1] = ARGV[i] end
local scores = redis.call('ZMSCORE', KEYS[2], unpack(ids))
local out, done, tried, lapsed, attempts = {}, {}, {}, {}, {}
for i, id in ipairs(ids) do
  out[i] = 0
  local score = tonumber(scores[i])
  if score and score == tonumber(ARGV[2 * i]) then
    local attempt = score % SCALE
    if math.floor(score / SCALE) > now then
      out[i] = 1
      done[#done + 1] = id
      -- Leased before: its tries entry goes too.
      if attempt > 1 then tried[#tried + 1] = id end
    else
      lapsed[#lapsed + 1] = id
      attempts[#attempts + 1] = attempt
    end
  end
end
if #done > 0 then
  redis.call('ZREM', KEYS[2], unpack(done))
  redis.call('HDEL', KEYS[4], unpack(done))
  if #tried > 0 then redis.call('HDEL', KEYS[5], unpack(tried)) end
end
if #lapsed > 0 then
  -- Lapsed: visible again under its own order, its attempts remembered.
  local bodies = redis.call('HMGET', KEYS[4], unpack(lapsed))
  local ready, tries = {}, {}
  for i, id in ipairs(lapsed) do
    local a = attempts[i]
    if a == SCALE - 1 then a = tonumber(redis.call('HGET', KEYS[5], id)) or a end
    ready[2 * i - 1] = (tonumber(bodies[i] and string.match(bodies[i], '^(%d+)|')) or 0) * 2 + 1
    ready[2 * i] = id
    tries[2 * i - 1] = id
    tries[2 * i] = a
  end
  redis.call('ZREM', KEYS[2], unpack(lapsed))
  redis.call('ZADD', KEYS[1], unpack(ready))
  redis.call('HSET', KEYS[5], unpack(tries))
  redis.call('LPUSH', KEYS[3], '1')
  redis.call('LTRIM', KEYS[3], 0, 15)
end
return out
