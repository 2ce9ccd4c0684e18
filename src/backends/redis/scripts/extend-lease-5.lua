--[[
  extend-lease-5 (5 keys): moves a held lease's deadline to now + ms. A lease whose deadline passed is
  lost (and made visible again here). (Keys: see enqueue-2.lua.)

  KEYS[1]  {prefix}q:<queue>:ready     ZSET id -> order
  KEYS[2]  {prefix}q:<queue>:inflight  ZSET id -> deadline * 1024 + min(attempt, 1023)
  KEYS[3]  {prefix}q:<queue>:signal    LIST wake-up tokens
  KEYS[4]  {prefix}q:<queue>:tries     HASH id -> times leased
  KEYS[5]  {prefix}q:<queue>:body      HASH id -> '<order>|<encoded message>'
  ARGV[1]  id segment
  ARGV[2]  lease token (the inflight score it was leased with)
  ARGV[3]  ms

  Returns the lease's new token (its new inflight score: the old one stops working), or 0 when
  the lease was lost.
]]
--#include order
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local SCALE = 1024
local id = ARGV[1]
local score = tonumber(redis.call('ZSCORE', KEYS[2], id))
if not score or score ~= tonumber(ARGV[2]) then return 0 end
local attempt = score % SCALE
if math.floor(score / SCALE) <= now then
  if attempt == SCALE - 1 then attempt = tonumber(redis.call('HGET', KEYS[4], id)) or attempt end
  local body = redis.call('HGET', KEYS[5], id)
  redis.call('ZREM', KEYS[2], id)
  redis.call('HSET', KEYS[4], id, attempt)
  redis.call('ZADD', KEYS[1], orderOf(body), id)
  redis.call('LPUSH', KEYS[3], '1')
  redis.call('LTRIM', KEYS[3], 0, 15)
  return 0
end
local token = (now + tonumber(ARGV[3])) * SCALE + attempt
redis.call('ZADD', KEYS[2], token, id)
return token
