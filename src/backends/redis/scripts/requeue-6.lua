--[[
  requeue-6 (6 keys): returns a leased message to its queue, visible again after delayMs, under its own
  order (it keeps its place). A lease whose deadline passed is lost. (Keys: see enqueue-2.lua.)

  KEYS[1]  {prefix}q:<queue>:ready     ZSET id -> order
  KEYS[2]  {prefix}q:<queue>:delayed   ZSET id -> visibleAt
  KEYS[3]  {prefix}q:<queue>:inflight  ZSET id -> deadline * 1024 + min(attempt, 1023)
  KEYS[4]  {prefix}q:<queue>:signal    LIST wake-up tokens
  KEYS[5]  {prefix}q:<queue>:tries     HASH id -> times leased
  KEYS[6]  {prefix}q:<queue>:body      HASH id -> '<order>|<encoded message>'
  ARGV[1]  id segment
  ARGV[2]  lease token (the inflight score it was leased with)
  ARGV[3]  delayMs
  ARGV[4]  '1' = undo: the lease was never handed to a consumer (its wait ended first), so
           the attempt it counted is taken back and its deadline does not matter

  Returns 1, or 0 when the lease was lost.
]]
--#include order
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local SCALE = 1024
local id = ARGV[1]
local score = tonumber(redis.call('ZSCORE', KEYS[3], id))
if not score or score ~= tonumber(ARGV[2]) then return 0 end
local deadline = math.floor(score / SCALE)
local attempts = score % SCALE
if attempts == SCALE - 1 then attempts = tonumber(redis.call('HGET', KEYS[5], id)) or attempts end
local delay = tonumber(ARGV[3])
local undo = ARGV[4] == '1'
if undo then attempts = attempts - 1 end
local lapsed = not undo and deadline <= now
-- A lapsed lease is lost: the message becomes visible again at once.
if lapsed then delay = 0 end
redis.call('ZREM', KEYS[3], id)
if attempts > 0 then redis.call('HSET', KEYS[5], id, attempts) else redis.call('HDEL', KEYS[5], id) end
if delay > 0 then
  redis.call('ZADD', KEYS[2], now + delay, id)
else
  local body = redis.call('HGET', KEYS[6], id)
  redis.call('ZADD', KEYS[1], orderOf(body), id)
end
redis.call('LPUSH', KEYS[4], '1')
redis.call('LTRIM', KEYS[4], 0, 15)
if lapsed then return 0 end
return 1
