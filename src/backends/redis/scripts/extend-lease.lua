--[[
  extend-lease: moves a held lease's deadline to now + ms. A lease whose deadline passed is
  lost (and made visible again here).

  KEYS[1]  {prefix}q:<queue>:ready     ZSET id -> order score
  KEYS[2]  {prefix}q:<queue>:inflight  ZSET id -> lease deadline
  KEYS[3]  {prefix}q:<queue>:signal    LIST wake-up tokens
  KEYS[4]  {prefix}q:<queue>:meta      HASH id -> '<score>:<attempts>:<lease tag>'
  ARGV[1]  id segment
  ARGV[2]  lease token ('<attempts>:<lease tag>')
  ARGV[3]  ms

  Returns the new deadline (server epoch ms), or 0 when the lease was lost.
]]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local id = ARGV[1]
local m = redis.call('HGET', KEYS[4], id)
local score = m and string.match(m, '^([^:]*):')
if not score or m ~= score .. ':' .. ARGV[2] then return 0 end
local deadline = tonumber(redis.call('ZSCORE', KEYS[2], id))
if not deadline then return 0 end
if deadline <= now then
  redis.call('HSET', KEYS[4], id, score .. ':' .. string.match(ARGV[2], '^(%d+)') .. ':')
  redis.call('ZREM', KEYS[2], id)
  redis.call('ZADD', KEYS[1], score, id)
  redis.call('LPUSH', KEYS[3], '1')
  redis.call('LTRIM', KEYS[3], 0, 15)
  return 0
end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), id)
return now + tonumber(ARGV[3])
