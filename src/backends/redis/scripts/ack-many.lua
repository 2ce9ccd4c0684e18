--[[
  ack-many: removes leased messages of one queue for good, each only if its lease is still
  held. A lease whose deadline passed is lost even before another consumer takes the message:
  it is made visible again here.

  KEYS[1]  {prefix}q:<queue>:ready     ZSET id -> order score
  KEYS[2]  {prefix}q:<queue>:inflight  ZSET id -> lease deadline
  KEYS[3]  {prefix}q:<queue>:signal    LIST wake-up tokens
  KEYS[4]  {prefix}q:<queue>:body      HASH id -> encoded message
  KEYS[5]  {prefix}q:<queue>:meta      HASH id -> '<score>:<attempts>:<lease tag>'
  ARGV[2i - 1]  id segment of the i-th ack (at most 1000 acks)
  ARGV[2i]      its lease token ('<attempts>:<lease tag>')

  Returns one item per ack: 1, or 0 when that lease was lost (expired, re-leased or moved).
]]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ids = {}
for i = 1, #ARGV, 2 do ids[#ids + 1] = ARGV[i] end
local metas = redis.call('HMGET', KEYS[5], unpack(ids))
local deadlines = redis.call('ZMSCORE', KEYS[2], unpack(ids))
local out, done, lapsed, ready, meta = {}, {}, {}, {}, {}
for i, id in ipairs(ids) do
  out[i] = 0
  local m = metas[i]
  local deadline = tonumber(deadlines[i])
  local score = m and string.match(m, '^([^:]*):')
  if score and deadline and m == score .. ':' .. ARGV[2 * i] then
    if deadline > now then
      out[i] = 1
      done[#done + 1] = id
    else
      -- Lapsed: visible again under its score, the lease tag dropped.
      lapsed[#lapsed + 1] = id
      ready[#ready + 1] = score
      ready[#ready + 1] = id
      meta[#meta + 1] = id
      meta[#meta + 1] = score .. ':' .. string.match(ARGV[2 * i], '^([^:]*)') .. ':'
    end
  end
end
if #done > 0 then
  redis.call('ZREM', KEYS[2], unpack(done))
  redis.call('HDEL', KEYS[4], unpack(done))
  redis.call('HDEL', KEYS[5], unpack(done))
end
if #lapsed > 0 then
  redis.call('ZREM', KEYS[2], unpack(lapsed))
  redis.call('ZADD', KEYS[1], unpack(ready))
  redis.call('HSET', KEYS[5], unpack(meta))
  redis.call('LPUSH', KEYS[3], '1')
  redis.call('LTRIM', KEYS[3], 0, 15)
end
return out
