--[[
  depth-3 (3 keys): how many messages of one queue are ready, delayed and leased, as of now
  (a due delayed message counts as ready, an expired lease as ready).

  KEYS[1]  {prefix}q:<queue>:ready     ZSET
  KEYS[2]  {prefix}q:<queue>:delayed   ZSET id -> visibleAt
  KEYS[3]  {prefix}q:<queue>:inflight  ZSET id -> deadline * 1024 + min(attempt, 1023)
  (no ARGV)

  Returns { ready, delayed, inFlight }.
]]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local dueDelayed = redis.call('ZCOUNT', KEYS[2], '-inf', now)
local expired = redis.call('ZCOUNT', KEYS[3], '-inf', now * 1024 + 1023)
return {
  redis.call('ZCARD', KEYS[1]) + dueDelayed + expired,
  redis.call('ZCARD', KEYS[2]) - dueDelayed,
  redis.call('ZCARD', KEYS[3]) - expired,
}
