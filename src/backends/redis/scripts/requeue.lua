--[[
  requeue: returns a leased message to its queue, visible again after delayMs, under its
  original order score (it keeps its place). A lease whose deadline passed is lost.

  KEYS[1]  {prefix}q:<queue>:ready     ZSET id -> order score
  KEYS[2]  {prefix}q:<queue>:delayed   ZSET id -> visibleAt
  KEYS[3]  {prefix}q:<queue>:inflight  ZSET id -> lease deadline
  KEYS[4]  {prefix}q:<queue>:signal    LIST wake-up tokens
  KEYS[5]  {prefix}q:<queue>:meta      HASH id -> '<score>:<attempts>:<lease tag>'
  ARGV[1]  id segment
  ARGV[2]  lease token ('<attempts>:<lease tag>')
  ARGV[3]  delayMs
  ARGV[4]  '1' = undo: the lease was never handed to a consumer (its wait ended first), so
           the attempt it counted is taken back and its deadline does not matter

  Returns 1, or 0 when the lease was lost.
]]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local id = ARGV[1]
local m = redis.call('HGET', KEYS[5], id)
local score = m and string.match(m, '^([^:]*):')
if not score or m ~= score .. ':' .. ARGV[2] then return 0 end
local deadline = tonumber(redis.call('ZSCORE', KEYS[3], id))
if not deadline then return 0 end
local attempts = tonumber(string.match(ARGV[2], '^(%d+)'))
local delay = tonumber(ARGV[3])
if ARGV[4] == '1' then
  attempts = attempts - 1
  deadline = now + 1
end
-- A lapsed lease is lost: the message becomes visible again at once.
if deadline <= now then delay = 0 end
redis.call('ZREM', KEYS[3], id)
redis.call('HSET', KEYS[5], id, score .. ':' .. attempts .. ':')
if delay > 0 then
  redis.call('ZADD', KEYS[2], now + delay, id)
else
  redis.call('ZADD', KEYS[1], score, id)
end
redis.call('LPUSH', KEYS[4], '1')
redis.call('LTRIM', KEYS[4], 0, 15)
if deadline <= now then return 0 end
return 1
