--[[
  ack-many-5 (5 keys): removes leased messages of one queue for good, each only if its lease is still
  held. A lease whose deadline passed is lost even before another consumer takes the message:
  it is made visible again here. (Keys and their contents: see enqueue-2.lua.)

  KEYS[1]  {prefix}q:<queue>:ready     ZSET id -> order
  KEYS[2]  {prefix}q:<queue>:inflight  ZSET id -> deadline * 1024 + min(attempt, 1023)
  KEYS[3]  {prefix}q:<queue>:signal    LIST wake-up tokens
  KEYS[4]  {prefix}q:<queue>:body      HASH id -> '<order>|<encoded message>'
  KEYS[5]  {prefix}q:<queue>:tries     HASH id -> times leased
  ARGV          the acks grouped by lease token (the inflight score they were leased with; the
                leases of one lease call share theirs): token, count, that many id segments,
                then the next group (at most 1000 acks)

  Returns one item per ack: 1, or 0 when that lease was lost (expired, re-leased or moved).
]]
--#include order
--#include ack
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local k = { ready = KEYS[1], inflight = KEYS[2], signal = KEYS[3], body = KEYS[4], tries = KEYS[5] }
return ackLeases(k, now, 1, #ARGV)
